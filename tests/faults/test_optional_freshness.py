"""An optional source whose API was down from the first day has never loaded a row (its raw
table was never created). Its freshness is judged with severity warning: the gate warns,
naming it never loaded, and publishing goes on; a required source in that state still fails
the gate."""

from __future__ import annotations

import pytest

from crm360.quality import QualityGateFailed, run_gate
from crm360.warehouse import connect

pytestmark = pytest.mark.slow

FRESHNESS = "derived:freshness"


def _sql(settings, statement):
    with connect(settings.warehouse) as con:
        con.execute(statement)


def _freshness_rows(settings, run_id):
    with connect(settings.warehouse, read_only=True) as con:
        return con.execute(
            "select table_name, expectation_type, severity, success from "
            "quality.validation_results where run_id = ? and table_name like 'derived:freshness%' "
            "order by all",
            [run_id],
        ).fetchall()


def test_an_optional_source_never_loaded_warns_and_is_named(gated, monkeypatch):
    monkeypatch.setenv("CRM360_OPTIONAL_SOURCES", "support")
    _sql(gated, "drop table raw.support_tickets")

    gate = run_gate(gated, "run-optional-never")

    summary = gate.summary()
    assert gate.status == "warning", summary
    assert summary["failed_critical"] == []
    assert summary["stale_sources"] == {"support": "never loaded (optional)"}
    optional = f"{FRESHNESS} (optional sources: support)"
    assert any(
        f"to_not_be_null on {optional}.newest_at: 1 unexpected of 1" in line
        for line in summary["failed_warning"]
    ), summary["failed_warning"]
    state = gate.metrics["source_freshness"]["support"]
    assert state == {
        "optional": True, "newest_at": None, "age_days": None,
        "max_age_days": 7, "state": "never loaded",
    }  # fmt: skip
    # the required sources are still judged on their own, critically, and pass
    assert gate.metrics["source_freshness"]["crm"]["state"] == "fresh"
    rows = _freshness_rows(gated, "run-optional-never")
    assert {severity for table, _, severity, _ in rows if table == optional} == {"warning"}
    assert all(success for table, _, _, success in rows if table == FRESHNESS)
    assert {severity for table, _, severity, _ in rows if table == FRESHNESS} >= {"critical"}


def test_an_optional_source_with_an_empty_table_warns(gated, monkeypatch):
    monkeypatch.setenv("CRM360_OPTIONAL_SOURCES", "support")
    _sql(gated, "delete from raw.support_tickets")

    gate = run_gate(gated, "run-optional-empty")

    assert gate.status == "warning", gate.summary()
    assert gate.summary()["stale_sources"] == {"support": "never loaded (optional)"}


def test_an_optional_source_that_is_stale_warns_with_its_age(gated, monkeypatch):
    monkeypatch.setenv("CRM360_OPTIONAL_SOURCES", "support")
    _sql(gated, "update raw.support_tickets set created_at = '2026-01-01 00:00:00'")

    gate = run_gate(gated, "run-optional-stale")

    assert gate.status == "warning", gate.summary()
    assert gate.summary()["stale_sources"] == {"support": "stale (optional)"}
    state = gate.metrics["source_freshness"]["support"]
    assert state["state"] == "stale" and state["age_days"] > state["max_age_days"] == 7


def test_a_required_source_never_loaded_still_fails_the_gate(gated, monkeypatch):
    monkeypatch.delenv("CRM360_OPTIONAL_SOURCES", raising=False)
    _sql(gated, "delete from raw.support_tickets")

    with pytest.raises(QualityGateFailed, match=r"newest_at: 1 unexpected"):
        run_gate(gated, "run-required-empty")

    rows = _freshness_rows(gated, "run-required-empty")
    assert {table for table, *_ in rows} == {FRESHNESS}
    failed = [(kind, severity) for _, kind, severity, success in rows if not success]
    assert ("expect_column_values_to_not_be_null", "critical") in failed
