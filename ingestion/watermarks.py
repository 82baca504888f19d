"""Watermarks of incrementally read sources (databases, APIs): up to when a source was read."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ingestion.raw import StateUpdate, ensure_raw_schema

if TYPE_CHECKING:
    import duckdb

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def read_watermark(con: duckdb.DuckDBPyConnection, source: str, obj: str) -> datetime:
    ensure_raw_schema(con)
    row = con.execute(
        "select watermark from raw._watermarks where source = ? and object = ?", [source, obj]
    ).fetchone()
    return datetime.fromisoformat(row[0]) if row else EPOCH


def set_watermark(source: str, obj: str, until: datetime) -> StateUpdate:
    """Move the watermark to `until`, inside the load's transaction."""
    return StateUpdate(
        "insert or replace into raw._watermarks values (?, ?, ?, ?, current_timestamp)",
        (source, obj, until.astimezone(UTC).isoformat(), ...),
    )
