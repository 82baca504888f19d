"""CRM contacts: a full export (Shift_JIS/CP932 from the legacy system) and daily UTF-8 delta
CSV files (crm/contacts_YYYYMMDD.csv).

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

SOURCE = "crm"


def load(
    con: duckdb.DuckDBPyConnection, source_dir: Path, as_of: datetime, run_id: str | None = None
) -> list[LoadResult]:
    return load_source_files(SOURCE, con, source_dir, as_of, run_id)
