"""Ingestion: one module per source system, each loading into the DuckDB `raw` schema.

Every module exposes `load(con, source_dir, as_of, run_id) -> list[LoadResult]`; its contract
is `contracts/<source>.yml` and where its data lives is `config/sources.yml`.
"""

from __future__ import annotations

import importlib
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

    from ingestion.raw import LoadResult

# In load order; the DAG creates one task per source from this list.
SOURCES = ("crm", "shop", "support", "web", "email", "social", "spend")


def load_source(
    source: str,
    con: duckdb.DuckDBPyConnection,
    source_dir: Path,
    as_of: datetime,
    run_id: str | None = None,
) -> list[LoadResult]:
    if source not in SOURCES:
        raise KeyError(f"unknown source {source!r}; known: {', '.join(SOURCES)}")
    module = importlib.import_module(f"ingestion.{source}")
    return module.load(con, source_dir, as_of, run_id)
