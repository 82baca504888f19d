"""One source's failure does not stop the others.

The helpdesk API is down (its URL is a closed port on 127.0.0.1: connection refused). Every
other source still loads, in its turn. With `CRM360_OPTIONAL_SOURCES=support` the marts are
built and published with the helpdesk's earlier data and the run report names it stale; by
default every source is required, and the run stops before dbt, naming the helpdesk.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import UTC, date, datetime, timedelta

import pytest
from conftest import make_settings

from crm360 import pipeline
from crm360.cli import execute_dag, explain_failure
from crm360.demo.generator import generate_demo
from crm360.report import format_report
from crm360.settings import PROJECT_ROOT, load_settings
from crm360.warehouse import connect

pytestmark = pytest.mark.slow

AS_OF = date(2026, 11, 1)
LATER_SOURCES = {"web", "email", "social", "spend"}  # after support in the load order


def _closed_port() -> int:
    """A port on 127.0.0.1 nobody listens on: a connection to it is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def demo_sources(tmp_path_factory):
    folder = tmp_path_factory.mktemp("helpdesk_down") / "sources"
    generate_demo(folder, customers=150, seed=21, as_of=AS_OF)
    return folder


@pytest.fixture
def helpdesk_down(demo_sources, tmp_path, monkeypatch):
    """Settings under tmp_path, the demo sources, and a sources config whose helpdesk URL
    refuses connections."""
    settings = make_settings(tmp_path)
    url = f"http://127.0.0.1:{_closed_port()}"
    config = (PROJECT_ROOT / "config" / "sources.yml").read_text(encoding="utf-8")
    assert 'url: "demo"' in config
    (tmp_path / "sources.yml").write_text(config.replace('"demo"', f'"{url}"'), encoding="utf-8")
    for name, value in {
        "CRM360_SOURCES_CONFIG": tmp_path / "sources.yml",
        "CRM360_SOURCE_DIR": demo_sources,
        "CRM360_WAREHOUSE": settings.warehouse,
        "CRM360_PUBLISHED_WAREHOUSE": settings.published_warehouse,
        "CRM360_EXPORT_DIR": settings.export_dir,
        "CRM360_GX_DIR": settings.gx_dir,
        "CRM360_DBT_TARGET_DIR": settings.dbt_target_dir,
        "AIRFLOW_HOME": tmp_path / "airflow",
        "CRM360_RETRY_DELAY_SECONDS": "1",  # the helpdesk task's retries cost seconds
    }.items():
        monkeypatch.setenv(name, str(value))
    for name in ("CRM360_START_DATE", "CRM360_DAILY_END_DATE", "CRM360_OPTIONAL_SOURCES"):
        monkeypatch.delenv(name, raising=False)
    return load_settings(), url


def _states(result) -> dict[str, str]:
    return {task["task_id"]: task["state"] for task in result.tasks}


def _loaded_sources(settings, run_id: str) -> set[str]:
    """The sources the run loaded (raw._loads)."""
    with connect(settings.warehouse, read_only=True) as con:
        rows = con.execute(
            "select distinct source from raw._loads where run_id = ?", [run_id]
        ).fetchall()
    return {source for (source,) in rows}


def _report(settings, run_id: str) -> dict:
    with connect(settings.warehouse, read_only=True) as con:
        (report,) = con.execute(
            "select report from ops.run_reports where run_id = ?", [run_id]
        ).fetchone()
    return json.loads(report)


def test_an_optional_source_that_is_down_leaves_the_marts_built_and_it_stale(
    helpdesk_down, monkeypatch
):
    settings, url = helpdesk_down
    # yesterday the helpdesk answered (the bundled demo API): the warehouse has its tickets
    helpdesk_down_config = os.environ["CRM360_SOURCES_CONFIG"]
    monkeypatch.delenv("CRM360_SOURCES_CONFIG")
    yesterday = datetime.combine(AS_OF - timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    earlier = pipeline.ingest_source("support", "yesterday", yesterday, settings)
    assert sum(load["rows_loaded"] for load in earlier["loads"]) > 0
    monkeypatch.setenv("CRM360_SOURCES_CONFIG", helpdesk_down_config)
    monkeypatch.setenv("CRM360_OPTIONAL_SOURCES", "support")

    result = execute_dag(settings, AS_OF)

    assert result.ok, result.log_file.read_text(encoding="utf-8")[-4000:]
    states = _states(result)
    assert states.pop("ingest_support") == "failed"
    assert set(states.values()) == {"success"}  # every other task, publish included
    assert _loaded_sources(settings, result.run["run_id"]) == {"crm", "shop"} | LATER_SOURCES
    report = _report(settings, result.run["run_id"])
    assert report["status"] == "success"
    assert set(report["stale_sources"]) == {"support"}
    assert report["stale_sources"]["support"].startswith("SourceApiError: ")
    assert url in report["stale_sources"]["support"]
    assert "  support: stale, failed to load (optional source): SourceApiError: " in (
        format_report(report)
    )
    assert report["marts"]["customer_360"] > 100
    with connect(settings.published_warehouse, read_only=True) as con:
        published = con.execute("select count(*) from marts.customer_360").fetchone()[0]
        tickets = con.execute("select count(*) from raw.support_tickets").fetchone()[0]
    assert published == report["marts"]["customer_360"]
    assert tickets == sum(load["rows_loaded"] for load in earlier["loads"])  # yesterday's only


def test_a_required_source_that_is_down_stops_the_run_before_dbt_and_is_named(helpdesk_down):
    settings, url = helpdesk_down

    result = execute_dag(settings, AS_OF)

    assert not result.ok
    states = _states(result)
    assert states["ingest_support"] == "failed"
    # the sources after it still loaded, one after another
    assert {states[f"ingest_{source}"] for source in LATER_SOURCES} == {"success"}
    assert _loaded_sources(settings, result.run["run_id"]) == {"crm", "shop"} | LATER_SOURCES
    assert states["check_sources"] == "failed"
    assert states["dbt_staging"] == "upstream_failed"
    assert states["publish_marts"] == "upstream_failed"
    assert not settings.published_warehouse.exists()
    why = explain_failure(settings, result)
    assert "check_sources failed on try 1 of 3" in why  # not retried: a retry cannot help
    assert "RequiredSourceFailed: required source(s) failed to load" in why
    assert f"support: SourceApiError: {url}" in why
    assert _report(settings, result.run["run_id"])["status"] == "failed at ingest_support"
