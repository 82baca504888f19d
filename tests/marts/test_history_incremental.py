"""The monthly history kept incrementally equals a full rebuild: after orders are added,
cancelled, re-priced and moved between customers (an identity merge), on the next day of the
same month, on a new month and with other settings. A copy of the shared demo warehouse is
changed and rebuilt with dbt as the pipeline runs it."""

from __future__ import annotations

import shutil
from datetime import date, timedelta

import pytest

from crm360.dbt import AS_OF_DATE_ENV, run_dbt, run_dbt_as_of
from crm360.warehouse import connect
from tests.conftest import MARTS_AS_OF, make_settings

pytestmark = pytest.mark.slow

HISTORY = "marts.customer_monthly_history"


@pytest.fixture
def warehouse(mart_warehouse, tmp_path):
    """Own settings on a copy of the demo warehouse, whose history (and the record of what it
    was built from) the shared build made as of MARTS_AS_OF."""
    settings = make_settings(tmp_path)
    settings.warehouse.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(mart_warehouse.warehouse, settings.warehouse)
    return settings


def build_history(settings, as_of: date, *flags: str, dbt_vars: dict | None = None) -> bool:
    """dbt run of the history as the pipeline runs it; True when dbt ran the incremental
    version (the compiled SQL that reads the last build's inputs)."""
    args = ["run", "--select", "customer_monthly_history", *flags]
    if dbt_vars is None:
        run_dbt_as_of(settings, args, as_of)
    else:
        run_dbt(settings, args, dbt_vars, {AS_OF_DATE_ENV: as_of.isoformat()})
    compiled = settings.dbt_target_dir.glob("compiled/**/customer_monthly_history.sql")
    return "customer_monthly_history__inputs" in next(compiled).read_text(encoding="utf-8")


def history_rows(settings) -> set[tuple]:
    """Every row, customer_id first, then the other columns by name (a table kept
    incrementally from an older one may hold them in another order)."""
    with connect(settings.warehouse, read_only=True) as con:
        columns = [c for (c,) in con.execute(
            "select column_name from information_schema.columns "
            "where table_schema = 'marts' and table_name = 'customer_monthly_history' "
            "order by column_name != 'customer_id', column_name"
        ).fetchall()]  # fmt: skip
        rows = con.execute(f"select {', '.join(columns)} from {HISTORY}").fetchall()
    assert len(rows) == len(set(rows))
    return set(rows)


def assert_equals_full_rebuild(settings, as_of: date, dbt_vars: dict | None = None) -> set:
    kept = history_rows(settings)
    assert not build_history(settings, as_of, "--full-refresh", dbt_vars=dbt_vars)
    rebuilt = history_rows(settings)
    assert kept == rebuilt
    return rebuilt


def change_orders(settings) -> dict[str, str]:
    """Change the priced orders as a new day can; return the customers whose orders before
    this month changed, by what happened to them."""
    with connect(settings.warehouse) as con:
        buyers = [c for (c,) in con.execute(
            "select customer_id from intermediate.int_orders__priced "
            "where is_completed and customer_id is not null "
            "group by 1 order by count(*) desc, customer_id"
        ).fetchall()]  # fmt: skip
        merged, survivor, cancelled, repriced, late, gone = (
            buyers[0], buyers[1], buyers[40], buyers[80], buyers[120], buyers[-1],
        )  # fmt: skip
        orders = "intermediate.int_orders__priced"
        # an identity merge: every order of one customer now belongs to another
        con.execute(
            f"update {orders} set customer_id = ? where customer_id = ?", [survivor, merged]
        )
        # the first order cancelled (the customer's first month moves later)
        con.execute(
            f"update {orders} set is_completed = false, order_status = 'cancelled' "
            f"where order_id = (select min_by(order_id, ordered_at) from {orders} "
            "where customer_id = ? and is_completed)",
            [cancelled],
        )
        con.execute(
            f"update {orders} set revenue = revenue + 98765 where order_id = "
            f"(select max(order_id) from {orders} where customer_id = ? and is_completed)",
            [repriced],
        )
        # an order loaded late into a past month, a new buyer, a customer with no order left
        con.execute(
            f"insert into {orders} by name select 990001 as order_id, ? as customer_id, "
            "timestamp '2026-02-03 10:00:00' as ordered_at, 'completed' as order_status, "
            "true as is_completed, 1500.00 as revenue",
            [late],
        )
        con.execute(
            f"insert into {orders} by name select 990002 as order_id, 'new-buyer' as customer_id, "
            "timestamp '2025-06-03 10:00:00' as ordered_at, 'completed' as order_status, "
            "true as is_completed, 777.00 as revenue"
        )
        con.execute(f"delete from {orders} where customer_id = ?", [gone])
        # an order of this month does not count in any reported month
        con.execute(
            f"insert into {orders} by name select 990003 as order_id, ? as customer_id, "
            f"date '{MARTS_AS_OF}' + interval 1 hour as ordered_at, 'completed' as order_status, "
            "true as is_completed, 999999.00 as revenue",
            [buyers[200]],
        )
    return {
        "merged": merged, "survivor": survivor, "cancelled": cancelled, "repriced": repriced,
        "late": late, "new": "new-buyer", "gone": gone,
    }  # fmt: skip


def test_a_day_of_changed_orders_rewrites_them_and_the_scores_they_moved(warehouse):
    before = history_rows(warehouse)
    changed = change_orders(warehouse)
    day = MARTS_AS_OF + timedelta(days=1)

    assert build_history(warehouse, day)
    after = assert_equals_full_rebuild(warehouse, day)

    customers_before = {row[0] for row in before}
    customers_after = {row[0] for row in after}
    moved = {row[0] for row in before ^ after}
    assert set(changed.values()) <= moved
    assert changed["new"] in customers_after - customers_before
    assert {changed["merged"], changed["gone"]} <= customers_before - customers_after
    # buyers whose orders did not change moved too: the changes moved a quintile edge
    assert moved - set(changed.values()), "expected the changes to move another buyer's score"
    assert len(moved) < len(customers_after) / 4


def test_an_unchanged_day_keeps_the_history_and_a_new_month_rebuilds_it(warehouse):
    before = history_rows(warehouse)
    day = MARTS_AS_OF + timedelta(days=1)
    assert build_history(warehouse, day)
    assert history_rows(warehouse) == before

    # a new month: the months reported move, every row is rebuilt
    next_month = date(2026, 12, 1)
    assert not build_history(warehouse, next_month)
    assert_equals_full_rebuild(warehouse, next_month)
    with connect(warehouse.warehouse, read_only=True) as con:
        newest = con.execute(f"select max(month) from {HISTORY}").fetchone()[0]
    assert newest == date(2026, 11, 1)
    # ... and the day after it is incremental again
    change_orders(warehouse)
    assert build_history(warehouse, next_month + timedelta(days=1))
    assert_equals_full_rebuild(warehouse, next_month + timedelta(days=1))


def test_other_settings_rebuild_every_row(warehouse):
    day = MARTS_AS_OF + timedelta(days=1)
    settings_vars = {"dormant_days": warehouse.dormant_days, "rfm_window_days": 365}
    assert not build_history(warehouse, day, dbt_vars=settings_vars)
    assert_equals_full_rebuild(warehouse, day, dbt_vars=settings_vars)
    assert build_history(warehouse, day, dbt_vars=settings_vars)
    # back to the project's window: rebuilt again
    assert not build_history(warehouse, day)
