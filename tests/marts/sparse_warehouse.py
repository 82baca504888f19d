"""Warehouses of tiny and sparse demo data, built through the real pipeline steps: a source
without data is simulated by emptying its raw tables after ingestion."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from pathlib import Path

from conftest import make_settings

from crm360 import pipeline
from crm360.settings import Settings
from crm360.warehouse import connect

SPARSE_AS_OF = date(2026, 11, 1)


def empty_sources(con, sources) -> list[str]:
    """Delete every row of the raw tables of `sources` (as their contracts name them): a
    source ('email') or one object of it ('shop.subscriptions'). Returns the tables emptied."""
    from ingestion.contracts import load_contract

    existing = {row[0] for row in con.execute(
        "select table_name from duckdb_tables() where schema_name = 'raw'"
    ).fetchall()}  # fmt: skip
    emptied = []
    for source in sources:
        source, _, only = source.partition(".")
        for name, contract in load_contract(source).items():
            if contract.raw_table in existing and only in ("", name):
                con.execute(f'delete from raw."{contract.raw_table}"')
                emptied.append(contract.raw_table)
    return emptied


def keep_first_order_per_account(con) -> None:
    """Leave each shop account only its first order, with its lines and returns: nobody has a
    repeat purchase (unless identity resolution joins two accounts of one person)."""
    con.execute("""
        delete from raw.shop_orders
        where order_id not in (
            select arg_min(order_id, ordered_at) from raw.shop_orders group by customer_id
        )
    """)
    for table in ("shop_order_items", "shop_returns"):
        con.execute(
            f"delete from raw.{table} where order_id not in (select order_id from raw.shop_orders)"
        )


def build_sparse_warehouse(
    root: Path,
    customers: int,
    empty: tuple[str, ...] = (),
    *,
    first_orders_only: bool = False,
    seed: int = 5,
) -> tuple[Settings, dict]:
    """Generate `customers` demo people, ingest every source, empty the raw tables of the
    sources in `empty` (and with `first_orders_only` every shop account's orders but the
    first), build staging, resolve identities and build the marts (dbt tests
    included) as of SPARSE_AS_OF. Returns the settings and build_marts' summary; raises when
    a step fails."""
    from crm360.demo.generator import generate_demo
    from ingestion import SOURCES

    settings = make_settings(root)
    generate_demo(settings.source_dir, customers=customers, seed=seed, as_of=SPARSE_AS_OF)
    as_of = datetime.combine(SPARSE_AS_OF, time(), tzinfo=UTC)
    for source in SOURCES:
        pipeline.ingest_source(source, "sparse-test", as_of, settings)
    with connect(settings.warehouse) as con:
        empty_sources(con, empty)
        if first_orders_only:
            keep_first_order_per_account(con)
    pipeline.build_staging(SPARSE_AS_OF, settings)
    pipeline.resolve_identities(SPARSE_AS_OF, "sparse-test", settings)
    return settings, pipeline.build_marts(SPARSE_AS_OF, settings)
