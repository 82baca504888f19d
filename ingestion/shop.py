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

from crm360.redact import redact_url
from ingestion.config import ObjectConfig, resolve_url, source_config
from ingestion.contracts import ContractError, ObjectContract, load_contract
from ingestion.mapping import ObjectMapping
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


def _relation(contract: ObjectContract, obj: ObjectConfig | None) -> tuple[str, str]:
    """The SQL the object is read from (a table or the configured query) and its name in
    messages."""
    if obj is not None and obj.query:
        return f"({obj.query.strip().rstrip(';')}) as source", f"the query of {contract.name}"
    table = _table(contract, obj)
    return '"' + table.replace('"', '""') + '"', f"table {table}"


def _table(contract: ObjectContract, obj: ObjectConfig | None) -> str:
    return (obj.table if obj is not None and obj.table else None) or contract.table


def read_changes(
    url: str,
    contract: ObjectContract,
    since: datetime,
    until: datetime,
    obj: ObjectConfig | None = None,
) -> pl.DataFrame:
    """Rows of the object's table (or configured query) changed in [since, until), every value
    as text, with the source's own column names."""
    import polars as pl

    column = contract.watermark if obj is None else obj.source_column(contract.watermark)
    relation, name = _relation(contract, obj)
    if url.startswith("sqlite:///"):
        columns, rows = _read_sqlite(_sqlite_path(url), relation, name, column, since, until)
    elif url.startswith(("postgresql://", "postgres://")):
        columns, rows = _read_postgres(url, relation, name, column, since, until)
    else:
        scheme = url.split(":", 1)[0]
        raise ContractError(f"shop: unsupported database {scheme!r} (sqlite or postgresql)")
    frame = pl.DataFrame(rows, schema=columns, orient="row", infer_schema_length=None)
    return frame.with_columns(pl.all().cast(pl.String))


def _read_sqlite(path: Path, relation: str, name: str, column: str, since, until):
    if not path.exists():
        raise ContractError(f"shop database not found: {path}")
    bounds = (since.astimezone(UTC).isoformat(), until.astimezone(UTC).isoformat())
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        try:
            # a row whose watermark column does not parse is read on every run, so that it
            # reaches quarantine (and stays visible) instead of never being read at all
            cursor = db.execute(
                f"select * from {relation} "
                f'where (julianday("{column}") >= julianday(?) '
                f'and julianday("{column}") < julianday(?)) or julianday("{column}") is null '
                f'order by "{column}"',
                bounds,
            )
        except sqlite3.Error as exc:
            raise ContractError(f"{path}: cannot read {name}: {exc}") from exc
        return [d[0] for d in cursor.description], cursor.fetchall()


def _read_postgres(url: str, relation: str, name: str, column: str, since, until):
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(_sqlalchemy_url(url))
    except sa.exc.ArgumentError:  # SQLAlchemy's message repeats the URL, password included
        raise ContractError(f"shop database: not a valid URL: {redact_url(url)}") from None
    try:
        with engine.connect() as db:
            result = db.execute(
                sa.text(
                    f'select * from {relation} where ("{column}" >= :since '
                    f'and "{column}" < :until) or "{column}" is null order by "{column}"'
                ),
                {"since": since.astimezone(UTC), "until": until.astimezone(UTC)},
            )
            return list(result.keys()), [tuple(r) for r in result.fetchall()]
    except sa.exc.ProgrammingError as exc:
        first = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise ContractError(f"shop database: cannot read {name}: {first}") from exc
    finally:
        engine.dispose()


def load(
    con: duckdb.DuckDBPyConnection, source_dir: Path, as_of: datetime, run_id: str | None = None
) -> list[LoadResult]:
    config = source_config(SOURCE)
    if config is None or not config.enabled:
        return []
    url = resolve_url(config, source_dir)
    changed = []
    for contract in load_contract(SOURCE).values():
        obj = config.objects.get(contract.name)
        if obj is not None and not obj.enabled:
            continue
        since = read_watermark(con, SOURCE, contract.name)
        if since < as_of:  # else already read up to this as-of (a re-run, an older backfill)
            changed.append((contract, since))
    results = []
    # the next table's changes are read while this table's are appended
    for (contract, _), frame in read_ahead(
        changed,
        lambda table: read_changes(
            url, table[0], table[1], as_of, config.objects.get(table[0].name)
        ),
    ):
        obj = config.objects.get(contract.name)
        read_from = f"query:{contract.name}" if obj and obj.query else _table(contract, obj)
        location = f"{redact_url(url)}#{read_from}"
        state = [set_watermark(SOURCE, contract.name, as_of)]
        mapping = ObjectMapping.of(config, obj)
        results.append(load_object(con, contract, frame, location, run_id, state, mapping=mapping))
    return results
