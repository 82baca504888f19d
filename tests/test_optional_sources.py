"""Every source but a customer list and its orders is optional: with each one left out of the
sources config in turn, the daily steps (ingest, staging, identity, marts, quality gate) succeed
and the run report names the source skipped and what it leaves empty."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time

import pytest
import yaml
from conftest import make_settings

from crm360 import pipeline
from crm360.demo.generator import generate_demo
from crm360.report import build_report, format_report
from crm360.settings import PROJECT_ROOT
from crm360.warehouse import connect
from ingestion import SOURCES

pytestmark = pytest.mark.slow

AS_OF = date(2026, 11, 1)
OPTIONAL = ("support", "web", "email", "social", "spend")


@pytest.fixture(scope="module")
def demo_sources(tmp_path_factory):
    folder = tmp_path_factory.mktemp("optional") / "sources"
    generate_demo(folder, customers=120, seed=9, as_of=AS_OF)
    return folder


def _run_steps(settings) -> dict:
    """The daily DAG's steps in order, as its tasks call them; the run report they make."""
    as_of = datetime.combine(AS_OF, time(), tzinfo=UTC)
    results = {f"ingest_{s}": pipeline.ingest_source(s, "run-1", as_of, settings) for s in SOURCES}
    results["dbt_staging"] = pipeline.build_staging(AS_OF, settings)
    results["resolve_identities"] = pipeline.resolve_identities(AS_OF, "run-1", settings)
    results["erase_personal_data"] = pipeline.erase_personal_data(AS_OF, "run-1", settings)
    results["dbt_build"] = pipeline.build_marts(AS_OF, settings)
    results["quality_gate"] = pipeline.check_quality("run-1", settings)
    results["publish_marts"] = pipeline.publish_marts(settings)
    return build_report("run-1", "crm360_daily", AS_OF, list(SOURCES), results.get, settings)


@pytest.mark.parametrize("missing", OPTIONAL)
def test_a_run_without_one_source_succeeds_and_says_what_it_lacks(
    missing, demo_sources, tmp_path, monkeypatch
):
    settings = make_settings(tmp_path)
    settings = type(settings)(**{**settings.__dict__, "source_dir": demo_sources})
    config = yaml.safe_load((PROJECT_ROOT / "config" / "sources.yml").read_text("utf-8"))
    del config["sources"][missing]
    (tmp_path / "sources.yml").write_text(yaml.safe_dump(config, allow_unicode=True), "utf-8")
    monkeypatch.setenv("CRM360_SOURCES_CONFIG", str(tmp_path / "sources.yml"))

    report = _run_steps(settings)

    assert report["status"] == "success"
    assert report["quality"]["status"] in ("passed", "warning")
    assert set(report["skipped_sources"]) == {missing}
    assert report["skipped_sources"][missing]["reason"] == "not in the sources config"
    assert report["skipped_sources"][missing]["left_empty"]
    assert f"  {missing}: skipped, not in the sources config" in format_report(report)
    with connect(settings.warehouse, read_only=True) as con:
        loads = {s for (s,) in con.execute("select distinct source from raw._loads").fetchall()}
        customers = con.execute("select count(*) from marts.customer_360").fetchone()[0]
        skipped_suites = json.loads(
            con.execute("select metrics from quality.gate_runs").fetchone()[0]
        ).get("skipped_suites", [])
    assert missing not in loads
    assert customers > 100
    # the gate does not judge a source the company does not have
    assert ("raw_web_events" in skipped_suites) == (missing == "web")
