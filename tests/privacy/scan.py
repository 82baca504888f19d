"""Looking for values in everything a run wrote: bytes of every file, every text cell of every
DuckDB, Parquet and SQLite file (their pages may compress or encode text)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import duckdb
import polars as pl


def _forms(value: str) -> set[bytes]:
    return {value.encode(), json.dumps(value)[1:-1].encode()}


def _duckdb_hits(path: Path, values: list[str]) -> dict[str, set[str]]:
    hits: dict[str, set[str]] = {}
    con = duckdb.connect(str(path), read_only=True)
    try:
        columns = con.execute(
            "select table_schema, table_name, column_name from information_schema.columns "
            "where table_catalog = current_database()"
        ).fetchall()
        for schema, table, column in columns:
            text = f'cast("{column}" as varchar)'
            for value in values:
                found = con.execute(
                    f'select count(*) from "{schema}"."{table}" where contains({text}, ?)', [value]
                ).fetchone()[0]
                if found:
                    hits.setdefault(f"{path}:{schema}.{table}.{column}", set()).add(value)
    finally:
        con.close()
    return hits


def _sqlite_hits(path: Path, values: list[str]) -> dict[str, set[str]]:
    hits: dict[str, set[str]] = {}
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in con.execute("select name from sqlite_master where type='table'")]
        for table in tables:
            for row in con.execute(f'select * from "{table}"'):
                text = " ".join(
                    v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                    for v in row if v is not None
                )  # fmt: skip
                for value in values:
                    if value in text or json.dumps(value)[1:-1] in text:
                        hits.setdefault(f"{path}:{table}", set()).add(value)
    finally:
        con.close()
    return hits


def find_values(root: Path, values: set[str], skip: tuple[Path, ...] = ()) -> dict[str, set[str]]:
    """Where under `root` (not under `skip`) any of `values` is found."""
    values = sorted(v for v in values if v)
    hits: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or any(path.is_relative_to(s) for s in skip):
            continue
        data = path.read_bytes()
        for value in values:
            if any(form in data for form in _forms(value)):
                hits.setdefault(str(path), set()).add(value)
        if data.startswith(b"SQLite format 3"):
            hits.update(_sqlite_hits(path, values))
        elif path.suffix == ".duckdb":
            hits.update(_duckdb_hits(path, values))
        elif path.suffix == ".parquet":
            frame = pl.read_parquet(path)
            text = frame.cast(pl.String).write_csv()
            for value in values:
                if value in text:
                    hits.setdefault(str(path), set()).add(value)
    return hits
