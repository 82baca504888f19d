"""Every source system, end to end through ingestion, on generated demo exports."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime

import pytest

from crm360.demo.generator import generate_demo
from crm360.warehouse import connect
from ingestion import SOURCES, load_source
from ingestion.contracts import contract_sources, load_contract

DAY1 = datetime(2026, 11, 1, tzinfo=UTC)
DAY2 = datetime(2026, 11, 2, tzinfo=UTC)
REASON_OF_KIND = {
    "missing_key": "missing required value in",
    "missing_required": "missing required value in",
    "unparsable_date": "unparsable date in",
    "unparsable_boolean": "unparsable boolean in",
    "unparsable_timestamp": "unparsable timestamp in",
    "duplicate_key": "duplicate primary key",
    "invalid_encoding": "invalid utf-8 byte sequence",
    "unknown_value": "unknown value in",
    "negative_quantity": "value below 1 in quantity",
    "value_above_max": "value above",
    "value_below_min": "value below",
    "malformed_json": "malformed JSON",
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """Demo exports up to 2026-11-02 (so a run as of 11-01 leaves one day for the next run)."""
    out = tmp_path_factory.mktemp("sources")
    counts = generate_demo(out, customers=250, seed=11, as_of=date(2026, 11, 2))
    return out, counts


def ingest_all(con, source_dir, as_of):
    return [r for source in SOURCES for r in load_source(source, con, source_dir, as_of, "test")]


def raw_counts(con):
    return {
        f"{c.source}.{c.name}": con.execute(f"select count(*) from raw.{c.raw_table}").fetchone()[0]
        for source in contract_sources()
        for c in load_contract(source).values()
    }


@pytest.fixture(scope="module")
def loaded(demo, tmp_path_factory):
    source_dir, counts = demo
    warehouse = tmp_path_factory.mktemp("wh") / "w.duckdb"
    with connect(warehouse) as con:
        results = ingest_all(con, source_dir, DAY2)
    return warehouse, results


def test_every_contract_column_lands_in_raw(loaded):
    warehouse, _ = loaded
    with connect(warehouse, read_only=True) as con:
        for source in contract_sources():
            for contract in load_contract(source).values():
                columns = {
                    r[0]
                    for r in con.execute(
                        "select column_name from information_schema.columns "
                        "where table_schema = 'raw' and table_name = ?",
                        [contract.raw_table],
                    ).fetchall()
                }
                assert set(contract.columns) <= columns, contract.raw_table
                rows = con.execute(f"select count(*) from raw.{contract.raw_table}").fetchone()[0]
                assert rows > 0, contract.raw_table


def test_rows_read_reconcile_with_what_was_exported(demo, loaded):
    _, counts = demo
    _, results = loaded
    read: dict[str, int] = {}
    for r in results:
        read[f"{r.source}_{r.object}"] = read.get(f"{r.source}_{r.object}", 0) + r.rows_read
        assert r.rows_read == r.rows_loaded + r.rows_quarantined
    assert read == counts


def test_each_injected_bad_row_is_quarantined_with_its_reason(demo, loaded):
    source_dir, _ = demo
    warehouse, _ = loaded
    injected = json.loads((source_dir / "_truth" / "injected_bad_rows.json").read_text())
    with connect(warehouse, read_only=True) as con:
        rows = con.execute("select source || '.' || object, reason from raw._quarantine").fetchall()
    by_object: dict[str, list[str]] = {}
    for obj, reason in rows:
        by_object.setdefault(obj, []).append(reason)
    assert set(by_object) == set(injected)
    for obj, kinds in injected.items():
        assert len(by_object[obj]) == sum(kinds.values()), obj
        for kind, count in kinds.items():
            matching = [r for r in by_object[obj] if REASON_OF_KIND[kind] in r]
            assert len(matching) >= count, (obj, kind, by_object[obj])


def test_shift_jis_full_export_loads_names_correctly(demo, loaded):
    source_dir, _ = demo
    warehouse, _ = loaded
    full_export = sorted((source_dir / "crm").glob("contacts_*.csv"))[0]
    first = full_export.read_bytes().decode("cp932").splitlines()[1].split(",")
    with connect(warehouse, read_only=True) as con:
        stored = con.execute(
            "select last_name, first_name_kana, _source_location from raw.crm_contacts where contact_id = ?",
            [first[0]],
        ).fetchall()
        encoding = con.execute(
            "select encoding from raw._files where file_name = ?", [f"crm/{full_export.name}"]
        ).fetchone()
    assert (stored[0][0], stored[0][1]) == (first[1], first[4])
    assert encoding == ("cp932",)


def test_rerun_is_a_no_op_and_the_next_day_loads_only_new_data(demo, tmp_path):
    source_dir, _ = demo
    # a late file: absent on day 1, delivered before day 2
    late = sorted((source_dir / "web" / "events").glob("date=2026-10-2*"))[0]
    hidden = tmp_path / "hidden"
    shutil.move(late, hidden)
    with connect(tmp_path / "w.duckdb") as con:
        day1 = ingest_all(con, source_dir, DAY1)
        after_day1 = raw_counts(con)
        rerun = ingest_all(con, source_dir, DAY1)
        assert rerun == []  # nothing to read: no new file, watermarks at the as-of
        assert raw_counts(con) == after_day1
        shutil.move(hidden, late)
        day2 = ingest_all(con, source_dir, DAY2)
        after_day2 = raw_counts(con)
        assert ingest_all(con, source_dir, DAY2) == []
    with connect(tmp_path / "once.duckdb") as con:
        ingest_all(con, source_dir, DAY2)
        once = raw_counts(con)

    assert after_day2 == once  # day by day == one run: nothing twice, nothing lost
    loaded_day2 = sum(r.rows_loaded for r in day2)
    assert 0 < loaded_day2 < sum(r.rows_loaded for r in day1)
    day2_files = {r.source_location for r in day2 if r.source in ("crm", "web", "email", "social")}
    assert str(late / "events.jsonl") in day2_files
    assert all("2026-11-01" in f or "20261101" in f or f.startswith(str(late)) for f in day2_files)


def test_shop_tables_before_an_unreadable_one_are_loaded_and_the_rest_wait(demo, tmp_path):
    """The shop's tables are read one ahead of their load; a table that cannot be read stops
    the load there, as when they were read one by one."""
    import sqlite3

    from ingestion import shop
    from ingestion.contracts import ContractError

    source_dir, _ = demo
    copy = tmp_path / "sources"
    shutil.copytree(source_dir / "shop", copy / "shop")
    with sqlite3.connect(copy / "shop" / "orders.sqlite") as db:
        db.execute("alter table order_items rename to order_items_old")
    tables = [c.name for c in load_contract("shop").values()]
    broken = tables.index("order_items")

    with connect(tmp_path / "w.duckdb") as con:
        with pytest.raises(ContractError, match="cannot read table order_items"):
            shop.load(con, copy, DAY1)
        loaded = con.execute("select object from raw._loads order by started_at").fetchall()
        marks = con.execute("select object from raw._watermarks order by object").fetchall()
        assert [o for (o,) in loaded] == tables[:broken]
        assert sorted(o for (o,) in marks) == sorted(tables[:broken])
        with sqlite3.connect(copy / "shop" / "orders.sqlite") as db:
            db.execute("alter table order_items_old rename to order_items")
        rest = shop.load(con, copy, DAY1)  # the next run reads only the tables left
    assert [r.object for r in rest] == tables[broken:]
    assert all(r.rows_read > 0 for r in rest)
