"""Values of the order-based columns, recomputed from the staging tables."""

from __future__ import annotations

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
