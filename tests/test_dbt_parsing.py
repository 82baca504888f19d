"""The pipeline's dbt builds get the as-of date from the environment, so that a new day does
not make dbt parse the whole project again (a changed var does), and every model still sees
the day's date."""

from __future__ import annotations

import json

import pytest

from crm360.dbt import run_dbt

pytestmark = pytest.mark.slow


def _parse(settings, as_of: str, dbt_vars: dict | None = None) -> tuple[str, dict]:
    log = settings.dbt_target_dir / "logs" / "dbt.log"
    before = log.stat().st_size if log.exists() else 0
    run_dbt(settings, ["parse"], {"dormant_days": 180, **(dbt_vars or {})},
            {"CRM360_AS_OF_DATE": as_of, "DBT_LOG_LEVEL_FILE": "debug"})  # fmt: skip
    with log.open(encoding="utf-8", errors="replace") as handle:
        handle.seek(before)
        text = handle.read()
    manifest = json.loads((settings.dbt_target_dir / "manifest.json").read_text("utf-8"))
    dates = {
        node["name"]: node["config"]["as_of_date"]
        for node in manifest["nodes"].values()
        if "as_of_date" in node["config"]
    }
    return text, dates


def test_a_new_as_of_date_is_parsed_partially_and_reaches_the_python_models(settings):
    _, dates = _parse(settings, "2026-11-01")
    assert set(dates) == {
        "ltv_model_fits", "customer_ltv", "churn_model_evaluation", "customer_churn_risk",
    }  # fmt: skip
    assert set(dates.values()) == {"2026-11-01"}

    log, dates = _parse(settings, "2026-11-02")
    assert "Unable to do partial parsing" not in log
    assert "Partial parsing: updated file" in log
    assert set(dates.values()) == {"2026-11-02"}

    # a var given on the command line wins over the environment
    _, dates = _parse(settings, "2026-11-02", {"as_of_date": "2026-10-15"})
    assert set(dates.values()) == {"2026-10-15"}


def test_the_models_compile_with_the_date_from_the_environment(settings):
    settings.warehouse.parent.mkdir(parents=True)
    run_dbt(settings, ["compile", "--select", "customer_360"], {"dormant_days": 180},
            {"CRM360_AS_OF_DATE": "2026-11-02"})  # fmt: skip
    (compiled,) = settings.dbt_target_dir.glob("compiled/**/customer_360.sql")
    assert "cast('2026-11-02' as date)" in compiled.read_text("utf-8")
    assert "current_date" not in compiled.read_text("utf-8")


def test_the_pipelines_dbt_runs_write_a_log_file_only_when_asked(settings, monkeypatch):
    log = settings.dbt_target_dir / "logs" / "dbt.log"
    monkeypatch.delenv("DBT_LOG_LEVEL_FILE", raising=False)
    run_dbt(settings, ["parse"], {"dormant_days": 180})
    assert (settings.dbt_target_dir / "manifest.json").exists()
    assert not log.exists() or log.stat().st_size == 0
    # dbt's own variable turns the file back on, at the level it names
    monkeypatch.setenv("DBT_LOG_LEVEL_FILE", "debug")
    run_dbt(settings, ["parse"], {"dormant_days": 180})
    assert "Partial parsing" in log.read_text(encoding="utf-8", errors="replace")
