"""The Great Expectations gate on a real warehouse (the shared 1,500-person demo build, copied):
every layer computed, severities, run-over-run limits, and no pass without a result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crm360.quality import QualityGateFailed, run_gate
from crm360.warehouse import connect

pytestmark = pytest.mark.slow


def stored(settings, run_id):
    with connect(settings.warehouse, read_only=True) as con:
        return con.execute(
            "select layer, expectation_type, table_name, column_name, severity, success, computed "
            "from quality.validation_results where run_id = ? order by all",
            [run_id],
        ).fetchall()


def sql(settings, statement):
    with connect(settings.warehouse) as con:
        con.execute(statement)


def test_clean_warehouse_passes_every_layer_and_results_are_stored(gated):
    gate = run_gate(gated, "run-ok")
    summary = gate.summary()
    assert gate.status == "passed", summary
    assert set(summary["layers"]) == {"raw", "staging", "marts"}
    assert summary["compared_with_run_id"].startswith("none: no previous successful run")
    rows = stored(gated, "run-ok")
    assert len(rows) == summary["expectations"] >= 35
    assert all(success and computed for *_, success, computed in rows)
    assert gate.data_docs and gate.data_docs.endswith("index.html")
    # Data Docs, built once after the checkpoints: a page per suite for this run, in the index
    site = Path(gate.data_docs).parent
    pages = sorted(site.glob("validations/*/run-ok/*/*.html"))
    assert {page.parts[-4] for page in pages} == {
        path.stem for path in (gated.gx_dir / "checkpoints").glob("*.json")
    } and len(pages) == 8
    index = Path(gate.data_docs).read_text(encoding="utf-8")
    assert all(page.relative_to(site).as_posix() in index for page in pages)
    with connect(gated.warehouse, read_only=True) as con:
        runs = con.execute("select run_id, status, metrics from quality.gate_runs").fetchall()
    assert runs[0][:2] == ("run-ok", "passed") and '"customer_360_rows"' in runs[0][2]


def test_a_critical_raw_failure_stops_the_gate(gated):
    sql(gated, "update raw.crm_contacts set email_opt_in = 'yes' where contact_id = "
               "(select min(contact_id) from raw.crm_contacts)")  # fmt: skip
    with pytest.raises(QualityGateFailed, match=r"in_set on raw\.crm_contacts\.email_opt_in: 1 "):
        run_gate(gated, "run-raw")
    failed = [r for r in stored(gated, "run-raw") if not r[5]]
    assert [(r[0], r[3], r[4]) for r in failed] == [("raw", "email_opt_in", "critical")]


def test_a_staging_warning_is_reported_and_the_run_goes_on(gated):
    # a prefecture that is not one of the 47
    sql(gated, "update staging.stg_crm__contacts set prefecture = 'Tokio' where contact_id = "
               "(select min(contact_id) from staging.stg_crm__contacts)")  # fmt: skip
    gate = run_gate(gated, "run-warn")
    assert gate.status == "warning"
    rows = _count(gated, "staging.stg_crm__contacts")
    assert gate.summary()["failed_warning"] == [
        "expect_column_values_to_be_in_set on staging.stg_crm__contacts.prefecture: "
        f"1 unexpected of {rows}"
    ]


def test_results_name_failing_values_without_row_positions_or_fingerprints(gated):
    """Stored results (and Data Docs) keep the counts and sample unexpected values; GX neither
    lists the failing rows' positions in the in-memory frame nor hashes the frame."""
    sql(gated, "update staging.stg_crm__contacts set prefecture = 'Tokio' where contact_id = "
               "(select min(contact_id) from staging.stg_crm__contacts)")  # fmt: skip
    assert run_gate(gated, "run-format").status == "warning"
    files = sorted((gated.gx_dir / "uncommitted" / "validations").glob("*/run-format/*/*.json"))
    assert len(files) == 8
    for path in files:
        validation = json.loads(path.read_text(encoding="utf-8"))
        markers = validation["meta"]["batch_markers"]
        assert "ge_load_time" in markers and "pandas_data_fingerprint" not in markers, path
        for result in validation["results"]:
            assert not {"partial_unexpected_index_list", "unexpected_index_query"} & set(
                result["result"]
            ), result["expectation_config"]["type"]
    contacts = json.loads(
        next(p for p in files if p.parts[-4] == "stg_crm__contacts").read_text(encoding="utf-8")
    )
    [failed] = [r for r in contacts["results"] if not r["success"]]
    assert failed["expectation_config"]["kwargs"]["column"] == "prefecture"
    assert failed["result"]["unexpected_count"] == 1
    assert failed["result"]["partial_unexpected_list"] == ["Tokio"]


def _count(settings, table):
    with connect(settings.warehouse, read_only=True) as con:
        return con.execute(f"select count(*) from {table}").fetchall()[0][0]


def test_a_critical_mart_failure_raises_and_is_stored(gated):
    sql(gated, "insert into marts.customer_360 select * from marts.customer_360 limit 1")
    with pytest.raises(QualityGateFailed, match=r"unique on marts\.customer_360\.customer_id"):
        run_gate(gated, "run-dup")
    failed = [r for r in stored(gated, "run-dup") if not r[5]]
    assert ("marts", "customer_id", "critical") in [(r[0], r[3], r[4]) for r in failed]


def test_decimal_and_date_columns_are_still_checked(gated):
    """They reach GX as doubles and timestamps: a negative revenue and a missing as_of_date
    still fail."""
    sql(gated, "update marts.customer_360 set total_revenue = -0.01 where customer_id = "
               "(select min(customer_id) from marts.customer_360)")  # fmt: skip
    sql(gated, "update marts.customer_360 set as_of_date = null where customer_id = "
               "(select max(customer_id) from marts.customer_360)")  # fmt: skip
    with pytest.raises(QualityGateFailed) as raised:
        run_gate(gated, "run-typed")
    message = str(raised.value)
    assert "to_be_between on marts.customer_360.total_revenue: 1 unexpected" in message
    assert "to_not_be_null on marts.customer_360.as_of_date: 1 unexpected" in message


def test_what_cannot_be_computed_or_read_fails(gated):
    sql(gated, "alter table marts.customer_360 drop column email")
    sql(gated, "drop table raw.web_events")
    with pytest.raises(QualityGateFailed) as raised:
        run_gate(gated, "run-missing")
    message = str(raised.value)
    assert "marts.customer_360.email: could not be computed" in message
    assert "table_is_readable on raw.web_events: could not be computed" in message
    not_computed = [r for r in stored(gated, "run-missing") if not r[6]]
    assert all(not r[5] for r in not_computed)
    assert {r[2] for r in not_computed} >= {"marts.customer_360", "raw.web_events"}


def test_row_counts_and_segment_shares_are_compared_with_the_previous_successful_run(gated):
    assert run_gate(gated, "day-1").status == "passed"
    # within tolerance: passes, compared with day-1
    assert run_gate(gated, "day-2").summary()["compared_with_run_id"] == "day-1"
    # a third of the customers vanish and the RFM segments are shuffled: warnings, not a stop
    sql(gated, "delete from marts.customer_360 where hash(customer_id) % 3 = 0")
    sql(gated, "update marts.customer_rfm set rfm_segment = 'Lost' where r_score <= 3")
    gate = run_gate(gated, "day-3")
    assert gate.status == "warning"
    warned = gate.summary()["failed_warning"]
    assert any(
        w.startswith("expect_table_row_count_to_be_between on marts.customer_360") for w in warned
    )
    assert any("derived:rfm_segment_shares.share_change" in w for w in warned)
    assert gate.summary()["compared_with_run_id"] == "day-2"
    # a run that only warned is the next run's baseline
    assert run_gate(gated, "day-4").summary()["compared_with_run_id"] == "day-3"


def test_every_suite_reads_the_columns_its_expectations_check():
    """A suite on a table names the columns to read (a wide mart read whole costs the gate
    seconds at a million rows); every column an expectation checks must be among them."""
    from crm360.quality import _suites
    from crm360.settings import load_settings

    suites = _suites(load_settings().gx_dir)
    assert "customer_360" in suites
    for name, meta in suites.items():
        if "table" not in meta:
            continue  # a derived frame
        assert meta.get("columns"), name
        suite = json.loads((load_settings().gx_dir / "expectations" / f"{name}.json").read_text())
        checked = {
            value
            for expectation in suite["expectations"]
            for key, value in expectation["kwargs"].items()
            if key in ("column", "column_A", "column_B")
        }
        assert checked <= set(meta["columns"]), (name, checked - set(meta["columns"]))


def test_frames_keep_values_and_nulls_when_decimals_and_dates_are_converted():
    import duckdb

    from crm360.quality import _to_pandas

    con = duckdb.connect()
    frame = _to_pandas(
        con.sql(
            "select * from (values (1, 12.34::decimal(38, 2), date '2026-11-02', 'a', true), "
            "(null, null, null, null, null)) as t(n, revenue, as_of_date, text, flag)"
        )
    )
    assert [str(t) for t in frame.dtypes] == [
        "int32[pyarrow]", "double[pyarrow]", "timestamp[s][pyarrow]", "string[pyarrow]",
        "bool[pyarrow]",
    ]  # fmt: skip
    assert frame.iloc[0].tolist()[:2] == [1, 12.34]
    assert str(frame["as_of_date"][0]) == "2026-11-02 00:00:00"
    assert frame.isna().iloc[1].all()
