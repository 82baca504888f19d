"""dbt's unit tests: run here, on the suite's warehouse, and left out of the daily build."""

from __future__ import annotations

import json

import pytest
from conftest import MARTS_AS_OF

from crm360 import pipeline
from crm360.dbt import run_dbt

pytestmark = pytest.mark.slow


def test_every_dbt_unit_test_passes(mart_warehouse):
    summary = run_dbt(
        mart_warehouse, ["test", "--select", "test_type:unit"],
        {"as_of_date": MARTS_AS_OF.isoformat()},
    )  # fmt: skip
    manifest = json.loads((mart_warehouse.dbt_target_dir / "manifest.json").read_text())
    defined = len(manifest["unit_tests"])
    assert defined >= 30
    assert summary["nodes"] == defined
    assert summary["statuses"] == {"pass": defined}


def test_the_daily_build_leaves_unit_tests_out(settings, monkeypatch):
    calls = []
    monkeypatch.setattr(
        "crm360.dbt.run_dbt",
        lambda settings, args, dbt_vars, env: calls.append(args) or {},
    )
    pipeline.build_staging(MARTS_AS_OF, settings)
    pipeline.build_marts(MARTS_AS_OF, settings)
    for args in calls:
        assert args[0] == "build"
        assert args[-2:] == ["--exclude-resource-type", "unit_test"]
    assert len(calls) == 2
