"""The dbt sources and the contracts documentation are generated from the contracts."""

from __future__ import annotations

from ingestion.config import resolve_url, source_config
from ingestion.contracts import contract_sources
from ingestion.render import rendered_files


def test_rendered_files_are_up_to_date():
    stale = [
        str(path) for path, text in rendered_files().items()
        if not path.exists() or path.read_text(encoding="utf-8") != text
    ]  # fmt: skip
    assert stale == [], "run `.venv/bin/python -m ingestion.render` and commit the result"


def test_every_contracted_source_is_configured():
    for source in contract_sources():
        assert source_config(source)


def test_airflow_connection_overrides_the_configured_url(monkeypatch, tmp_path):
    block = source_config("shop")
    assert resolve_url(block, tmp_path) == f"sqlite:///{tmp_path}/shop/orders.sqlite"
    monkeypatch.setenv("AIRFLOW_CONN_CRM360_SHOP", "postgresql://crm:secret@db.internal/shop")
    assert resolve_url(block, tmp_path) == "postgresql://crm:secret@db.internal/shop"
