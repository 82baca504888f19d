"""Online shop orders database (SQLite file): customers, products, orders and order items."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from ingestion.contracts import ContractError, load_contract
from ingestion.raw import LoadResult, load_object

if TYPE_CHECKING:
    import duckdb
    import polars as pl

DATABASE_FILE = "orders.sqlite"


def read_table(db_path: Path, table: str) -> pl.DataFrame:
    """Read one table of the orders database, every value as text (checked against the contract)."""
    import polars as pl

    if not db_path.exists():
        raise ContractError(f"orders database not found: {db_path}")
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
        try:
            cursor = db.execute(f'select * from "{table}"')
        except sqlite3.OperationalError as exc:
            raise ContractError(f"{db_path}: cannot read table {table}: {exc}") from exc
        columns = [d[0] for d in cursor.description]
        rows = cursor.fetchall()
    frame = pl.DataFrame(rows, schema=columns, orient="row", infer_schema_length=None)
    return frame.with_columns(pl.all().cast(pl.String))


def load_orders_db(
    con: duckdb.DuckDBPyConnection, source_dir: Path, run_id: str | None = None
) -> list[LoadResult]:
    """Load every object of the shop contract; each table is its own transaction."""
    db_path = source_dir / DATABASE_FILE
    results = []
    for contract in load_contract("shop").values():
        frame = read_table(db_path, contract.table)
        results.append(load_object(con, contract, frame, f"{db_path}#{contract.table}", run_id))
    return results
