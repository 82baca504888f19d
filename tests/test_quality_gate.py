"""The Great Expectations gate: real computation, severities, and no pass without a result."""

from __future__ import annotations

import pytest

from crm360.quality import QualityGateFailed, run_gate
from crm360.warehouse import connect

GOOD_ROWS = """
    ('cus_000000000000000a', 'a@example.com', '+819012345678', '150-0002'),
    ('cus_000000000000000b', 'b@example.com', '+81312345678', '530-0001'),
    ('cus_000000000000000c', 'c@example.com', null, null)
"""


def make_360(settings, rows=GOOD_ROWS, drop=None):
    with connect(settings.warehouse) as con:
        con.execute("create schema if not exists marts")
        con.execute(
            f"""
            create or replace table marts.customer_360 as
            select customer_id, email, phone_e164, postal_code,
                true as is_email_opted_in, false as is_do_not_contact,
                1 as order_count, 1000.0 as total_revenue, date '2026-11-01' as as_of_date
            from (values {rows}) as t(customer_id, email, phone_e164, postal_code)
            """
        )
        if drop:
            con.execute(f"alter table marts.customer_360 drop column {drop}")


def stored(settings, run_id):
    with connect(settings.warehouse, read_only=True) as con:
        return con.execute(
            "select expectation_type, column_name, severity, success, computed, unexpected_count "
            "from quality.validation_results where run_id = ?",
            [run_id],
        ).fetchall()


def test_clean_table_passes_and_results_are_stored(settings):
    make_360(settings)
    gate = run_gate(settings, "run-ok")
    assert gate.status == "passed"
    rows = stored(settings, "run-ok")
    assert len(rows) == 13
    assert all(success and computed for *_, success, computed, _ in rows)
    assert gate.data_docs and gate.data_docs.endswith("index.html")


def test_a_warning_is_reported_and_the_run_goes_on(settings):
    make_360(settings, GOOD_ROWS.replace("'+81312345678'", "'03-1234-5678'"))
    gate = run_gate(settings, "run-warn")
    assert gate.status == "warning"
    assert gate.summary()["failed_warning"] == [
        "expect_column_values_to_match_regex on marts.customer_360.phone_e164: 1 unexpected of 3"
    ]


def test_a_critical_failure_raises_and_is_stored(settings):
    make_360(settings, GOOD_ROWS.replace("cus_000000000000000b", "cus_000000000000000a"))
    with pytest.raises(
        QualityGateFailed,
        match="expect_column_values_to_be_unique on marts.customer_360.customer_id",
    ):
        run_gate(settings, "run-dup")
    failed = [r for r in stored(settings, "run-dup") if not r[3]]
    assert [(r[0], r[1], r[2]) for r in failed] == [
        ("expect_column_values_to_be_unique", "customer_id", "critical")
    ]


def test_an_expectation_that_cannot_be_computed_fails(settings):
    # the suite checks the e-mail column; without it GX cannot compute: never a pass
    make_360(settings, drop="email")
    with pytest.raises(QualityGateFailed, match="email: could not be computed"):
        run_gate(settings, "run-missing")
    not_computed = [r for r in stored(settings, "run-missing") if not r[4]]
    assert {r[1] for r in not_computed} == {"email"}
    assert all(not r[3] for r in not_computed)
