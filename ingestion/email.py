"""E-mail / marketing automation: the campaign list (campaigns.csv, a snapshot re-read when it
changes) and daily per-recipient event files (events_YYYYMMDD.csv).

Each file is loaded once per content; see ingestion/files.py for discovery and encodings.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ingestion.files import load_source_files
from ingestion.raw import LoadResult

if TYPE_CHECKING:
    import duckdb

SOURCE = "email"


def load(
    con: duckdb.DuckDBPyConnection, source_dir: Path, as_of: datetime, run_id: str | None = None
) -> list[LoadResult]:
    return load_source_files(SOURCE, con, source_dir, as_of, run_id)
