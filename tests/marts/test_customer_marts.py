"""Values of the order-based columns, recomputed from the staging tables."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import pytest

from crm360.warehouse import connect

pytestmark = pytest.mark.slow

AS_OF_SQL = "timestamp '2026-11-01'"


def test_orders_reach_their_customer_through_the_identity_graph(mart_warehouse):
    with connect(mart_warehouse.warehouse, read_only=True) as con:
        mismatches = con.execute(f"""
            with expected as (
                select graph.customer_id, count(*) as order_count, sum(lines.revenue) as revenue,
                from staging.stg_shop__orders as orders
                join (
                    select items.order_id, sum(items.quantity * items.unit_price) as revenue,
                    from staging.stg_shop__order_items as items
                    join staging.stg_shop__products using (product_id)
                    group by 1
                ) as lines using (order_id)
                join identity.identity_graph as graph
                    on graph.record_id = 'shop:' || orders.shop_customer_id
                where orders.is_completed and orders.ordered_at < {AS_OF_SQL}
                group by 1
            )
            select count(*) from expected
            full join marts.customer_360 as c360 using (customer_id)
            where coalesce(expected.order_count, 0) != c360.order_count
                or coalesce(expected.revenue, 0) != c360.total_revenue
        """).fetchone()[0]
        buyers = con.execute(
            "select count(*) from marts.customer_360 where order_count > 0"
        ).fetchone()[0]
    assert buyers > 500
    assert mismatches == 0


def test_profit_contribution_recomputed_from_the_order_lines(mart_warehouse):
    """Margin per prefecture, channel, industry and category, from the staging order lines."""
    with connect(mart_warehouse.warehouse, read_only=True) as con:
        con.execute(f"""
            create temp table lines as
            select graph.customer_id, products.category,
                items.quantity * (items.unit_price - products.unit_cost) as margin,
            from staging.stg_shop__order_items as items
            join staging.stg_shop__products as products using (product_id)
            join staging.stg_shop__orders as orders using (order_id)
            join identity.identity_graph as graph
                on graph.record_id = 'shop:' || orders.shop_customer_id
            where orders.is_completed and orders.ordered_at < {AS_OF_SQL}
        """)
        expected = con.execute("""
            select 'product_category', category, sum(margin) from lines group by all
            union all
            select 'prefecture', coalesce(c360.prefecture, '(unknown)'), sum(coalesce(margin, 0))
            from marts.customer_360 as c360 left join lines using (customer_id) group by all
            union all
            select 'acquisition_channel', coalesce(c360.acquisition_channel, '(unknown)'),
                sum(coalesce(margin, 0))
            from marts.customer_360 as c360 left join lines using (customer_id) group by all
            union all
            select 'industry', coalesce(c360.industry, '(unknown)'), sum(coalesce(margin, 0))
            from marts.customer_360 as c360 left join lines using (customer_id)
            where c360.is_business group by all
        """).fetchall()
        actual = con.execute(
            "select dimension, dimension_value, gross_margin from marts.profit_contribution"
        ).fetchall()
        total = con.execute("select sum(total_gross_margin) from marts.customer_360").fetchone()[0]
    assert sorted(actual) == sorted(expected)
    assert len({d for d, _, _ in actual}) == 4
    for dimension in ("prefecture", "acquisition_channel", "product_category"):
        assert sum(m for d, _, m in actual if d == dimension) == total


def test_cac_recomputed_from_spend_and_first_orders(mart_warehouse):
    with connect(mart_warehouse.warehouse, read_only=True) as con:
        expected = dict(
            con.execute(f"""
            with first_orders as (
                select graph.customer_id, min(orders.ordered_at) as first_at,
                from staging.stg_shop__orders as orders
                join identity.identity_graph as graph
                    on graph.record_id = 'shop:' || orders.shop_customer_id
                where orders.is_completed and orders.ordered_at < {AS_OF_SQL}
                group by 1
            )
            select (date_trunc('month', first_at)::date, coalesce(c.acquisition_channel,
                '(unknown)')), count(*)
            from first_orders join marts.customer_360 as c using (customer_id)
            where first_at < date '2026-11-01'
            group by all
        """).fetchall()
        )
        spend = dict(
            con.execute(
                "select (month_start, acquisition_channel), sum(spend_amount) "
                "from staging.stg_spend__monthly where month_start < date '2026-11-01' group by all"
            ).fetchall()
        )
        rows = con.execute(
            "select month_start, acquisition_channel, spend_amount, new_customer_count, cac "
            "from marts.acquisition_channel_cac"
        ).fetchall()
    assert {(m, ch) for m, ch, *_ in rows} == set(expected) | set(spend)
    for month, channel, spend_amount, new_customers, cac in rows:
        assert new_customers == expected.get((month, channel), 0)
        assert spend_amount == spend.get((month, channel))
        if spend_amount is not None and new_customers:
            # rounded half away from zero, as SQL's round()
            expected_cac = (spend_amount / new_customers).quantize(Decimal(1), ROUND_HALF_UP)
            assert cac == expected_cac
