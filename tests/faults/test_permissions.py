"""Least privilege: nothing a run creates is readable by other users of the machine.

The warehouse, its published copy, the audience exports, the Data Docs, Airflow's metadata
database and the logs hold personal data or describe it: after a real run of both DAGs every
file is 0600 and every folder 0700 (no group or other bits).
"""

from __future__ import annotations

import os
import stat
from datetime import date
from pathlib import Path

import pytest
from conftest import use_settings

from crm360.cli import run_pipeline
from crm360.demo.generator import generate_demo
from crm360.settings import load_settings

pytestmark = pytest.mark.slow

AS_OF = date(2026, 11, 1)


def _readable_by_others(root: Path) -> list[str]:
    """Every folder and file under root (root included) with a group or other permission bit."""
    found = []
    for folder, dirs, files in os.walk(root):
        for path in [Path(folder)] + [Path(folder) / name for name in dirs + files]:
            mode = path.lstat().st_mode
            if not stat.S_ISLNK(mode) and mode & 0o077:
                found.append(f"{path} {stat.filemode(mode)}")
    return sorted(set(found))


def test_everything_a_run_creates_is_private_to_its_owner(tmp_path, monkeypatch):
    settings = use_settings(monkeypatch, tmp_path)
    monkeypatch.delenv("CRM360_OPTIONAL_SOURCES", raising=False)
    generate_demo(settings.source_dir, customers=150, seed=23, as_of=AS_OF)
    settings = load_settings()

    ok, log_file = run_pipeline(settings, AS_OF)

    assert ok, log_file.read_text(encoding="utf-8")[-4000:]
    outputs = {
        "warehouse": settings.warehouse.parent,  # and the published copy under it
        "exports": settings.export_dir,
        "data docs": settings.gx_dir / "uncommitted",
        "airflow": tmp_path / "airflow",
    }
    # the run made each of them, with files in it
    assert settings.published_warehouse.is_file()
    assert list(settings.export_dir.glob("*/latest.json"))
    assert list(outputs["data docs"].rglob("index.html"))
    assert (tmp_path / "airflow" / "airflow.db").is_file()
    assert log_file.is_file()
    for what, root in outputs.items():
        assert _readable_by_others(root) == [], what
