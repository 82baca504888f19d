"""Online shop database: customers, products, orders, order items, subscriptions, returns.

Read incrementally: each table's rows with `updated_at` in [watermark, as-of) are appended to
its raw table and the watermark moves to the as-of time in the same transaction. Re-running
the same as-of reads nothing; running day after day reads each day's changes once.

The default database is a SQLite file; give a SQLAlchemy URL (postgresql://...) in
`config/sources.yml` or `AIRFLOW_CONN_CRM360_SHOP` to read a live PostgreSQL instead (the
psycopg driver is installed with the project).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ingestion.config import resolve_url, source_config
from ingestion.contracts import ContractError, ObjectContract, load_contract
from ingestion.raw import LoadResult, load_object
from ingestion.readahead import read_ahead
from ingestion.watermarks import read_watermark, set_watermark

if TYPE_CHECKING:
    import duckdb
    import polars as pl

SOURCE = "shop"


def _sqlite_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


def _sqlalchemy_url(url: str) -> str:
    """postgresql:// (Airflow's form) means the psycopg 3 driver installed with the project."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


def read_changes(
    url: str, contract: ObjectContract, since: datetime, until: datetime
) -> pl.DataFrame:
    """Rows of the contract's table changed in [since, until), every value as text."""
    import polars as pl

    column = contract.watermark
    bounds = (since.astimezone(UTC).isoformat(), until.astimezone(UTC).isoformat())
    if url.startswith("sqlite:///"):
        path = _sqlite_path(url)
        if not path.exists():
            raise ContractError(f"shop database not found: {path}")
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            try:
                # a row whose watermark column does not parse is read on every run, so that it
                # reaches quarantine (and stays visible) instead of never being read at all
                cursor = db.execute(
                    f'select * from "{contract.table}" '
                    f'where (julianday("{column}") >= julianday(?) '
                    f'and julianday("{column}") < julianday(?)) or julianday("{column}") is null '
                    f'order by "{column}"',
                    bounds,
                )
            except sqlite3.OperationalError as exc:
                raise ContractError(f"{path}: cannot read table {contract.table}: {exc}") from exc
            columns = [d[0] for d in cursor.description]
            rows = cursor.fetchall()
    else:
        import sqlalchemy as sa

        engine = sa.create_engine(_sqlalchemy_url(url))
        with engine.connect() as db:
            result = db.execute(
                sa.text(
                    f'select * from "{contract.table}" where ("{column}" >= :since '
                    f'and "{column}" < :until) or "{column}" is null order by "{column}"'
                ),
                {"since": since.astimezone(UTC), "until": until.astimezone(UTC)},
            )
            columns = list(result.keys())
            rows = [tuple(r) for r in result.fetchall()]
        engine.dispose()
    frame = pl.DataFrame(rows, schema=columns, orient="row", infer_schema_length=None)
    return frame.with_columns(pl.all().cast(pl.String))


def load(
    con: duckdb.DuckDBPyConnection, source_dir: Path, as_of: datetime, run_id: str | None = None
) -> list[LoadResult]:
    url = resolve_url(source_config(SOURCE), source_dir)
    changed = []
    for contract in load_contract(SOURCE).values():
        since = read_watermark(con, SOURCE, contract.name)
        if since < as_of:  # else already read up to this as-of (a re-run, an older backfill)
            changed.append((contract, since))
    results = []
    # the next table's changes are read while this table's are appended
    for (contract, _), frame in read_ahead(
        changed, lambda table: read_changes(url, table[0], table[1], as_of)
    ):
        location = f"{url}#{contract.table}"
        state = [set_watermark(SOURCE, contract.name, as_of)]
        results.append(load_object(con, contract, frame, location, run_id, state))
    return results
