"""The shop connector reads a live PostgreSQL the same way it reads the SQLite file.

Starts a throwaway PostgreSQL server (the machine's own binaries) on 127.0.0.1, copies the
demo shop database into it with proper timestamptz columns, and compares the loads.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from postgres_server import copy_to_postgres, postgres_server

from crm360.demo.generator import generate_demo
from crm360.warehouse import connect
from ingestion import shop

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def postgres_url():
    with postgres_server() as url:
        yield url


def test_postgres_loads_the_same_rows_as_sqlite(postgres_url, tmp_path, monkeypatch):
    generate_demo(tmp_path / "src", customers=150, seed=5, as_of=date(2026, 11, 1))
    copy_to_postgres(tmp_path / "src" / "shop" / "orders.sqlite", postgres_url)

    with connect(tmp_path / "sqlite.duckdb") as con:
        from_sqlite = {
            r.object: (r.rows_read, r.rows_quarantined)
            for r in shop.load(con, tmp_path / "src", AS_OF)
        }
        sqlite_orders = con.execute(
            "select sum(cast(order_id as bigint)) from raw.shop_orders"
        ).fetchone()

    # a password in the URL (the server trusts local connections and ignores it) must not be
    # stored with the rows
    with_password = postgres_url.replace("postgres@", "postgres:s3cr3t-pw@")
    monkeypatch.setenv("AIRFLOW_CONN_CRM360_SHOP", with_password)
    with connect(tmp_path / "pg.duckdb") as con:
        results = shop.load(con, tmp_path / "src", AS_OF)
        from_pg = {r.object: (r.rows_read, r.rows_quarantined) for r in results}
        pg_orders = con.execute(
            "select sum(cast(order_id as bigint)) from raw.shop_orders"
        ).fetchone()
        # timestamps from PostgreSQL pass the same contract checks
        bad_times = con.execute(
            "select count(*) from raw.shop_orders where try_cast(ordered_at as timestamptz) is null"
        ).fetchone()
        again = shop.load(con, tmp_path / "src", AS_OF)
        stored = con.execute(
            "select count(*) from (select source_location from raw._loads union all "
            "select source_location from raw._quarantine union all "
            "select _source_location from raw.shop_orders union all "
            "select _source_location from raw.shop_customers) where source_location like '%s3cr3t%'"
        ).fetchone()[0]
        masked = con.execute("select any_value(source_location) from raw._loads").fetchone()[0]

    assert results[0].source_location.startswith("postgresql://")
    from_sqlite["customers"] = (from_sqlite["customers"][0] - 1, from_sqlite["customers"][1] - 1)
    assert from_pg == from_sqlite
    assert pg_orders == sqlite_orders
    assert bad_times == (0,)
    assert again == []  # watermark reached: nothing read twice
    assert stored == 0
    assert masked.startswith("postgresql://postgres:***@127.0.0.1:")
