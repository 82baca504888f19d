"""Shared fixtures: isolated settings (own warehouse, exports, GX context copy) per test."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
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


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)
