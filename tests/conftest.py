"""Shared fixtures: isolated settings (own warehouse, exports, GX context copy) per test."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from datetime import UTC, date, datetime, time
from pathlib import Path

import pytest

from crm360.settings import PROJECT_ROOT, Settings, load_settings


def pytest_configure(config):
    # Airflow reads AIRFLOW_HOME at import: never let the tests touch a user's ~/airflow.
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="crm360-airflow-"))
    os.environ["GX_ANALYTICS_ENABLED"] = "false"


def make_settings(root: Path) -> Settings:
    """Settings whose every writable path lies under `root`; code and models from the repo."""
    gx_dir = root / "expectations"
    shutil.copytree(
        PROJECT_ROOT / "expectations", gx_dir, ignore=shutil.ignore_patterns("uncommitted")
    )
    return dataclasses.replace(
        load_settings(),
        home=PROJECT_ROOT,
        source_dir=root / "sources",
        warehouse=root / "warehouse" / "crm360.duckdb",
        published_warehouse=root / "warehouse" / "published" / "crm360.duckdb",
        export_dir=root / "exports",
        dbt_target_dir=root / "dbt_target",
        gx_dir=gx_dir,
        dormant_days=180,
    )


def use_settings(monkeypatch, root):
    """Point every CRM360_* path (and AIRFLOW_HOME) under root, as a user's environment would."""
    settings = make_settings(root)
    for name, value in {
        "CRM360_SOURCE_DIR": settings.source_dir,
        "CRM360_WAREHOUSE": settings.warehouse,
        "CRM360_PUBLISHED_WAREHOUSE": settings.published_warehouse,
        "CRM360_EXPORT_DIR": settings.export_dir,
        "CRM360_GX_DIR": settings.gx_dir,
        "CRM360_DBT_TARGET_DIR": settings.dbt_target_dir,
        "AIRFLOW_HOME": root / "airflow",
        "CRM360_RETRY_DELAY_SECONDS": "1",  # should a retry happen, it costs a second
    }.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.delenv("CRM360_START_DATE", raising=False)
    monkeypatch.delenv("CRM360_DAILY_END_DATE", raising=False)
    return settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


MARTS_AS_OF = date(2026, 11, 1)
MARTS_PEOPLE = 1500


@pytest.fixture(scope="session")
def mart_warehouse(tmp_path_factory):
    """One demo warehouse built through the real pipeline steps, shared by the mart value tests
    (which only read it and recompute their figures independently): 1,500 demo people as of
    2026-11-01."""
    from crm360 import pipeline
    from crm360.demo.generator import generate_demo
    from ingestion import SOURCES

    settings = make_settings(tmp_path_factory.mktemp("marts"))
    generate_demo(settings.source_dir, customers=MARTS_PEOPLE, seed=5, as_of=MARTS_AS_OF)
    as_of = datetime.combine(MARTS_AS_OF, time(), tzinfo=UTC)
    for source in SOURCES:
        pipeline.ingest_source(source, "marts-test", as_of, settings)
    pipeline.build_staging(MARTS_AS_OF, settings)
    pipeline.resolve_identities(MARTS_AS_OF, "marts-test", settings)
    pipeline.build_marts(MARTS_AS_OF, settings)
    return settings


@pytest.fixture
def gated(settings, mart_warehouse):
    """A private copy of the demo warehouse to break things in."""
    settings.warehouse.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(mart_warehouse.warehouse, settings.warehouse)
    return settings
