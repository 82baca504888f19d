-- One row per order with its customer (through the identity graph) and its revenue, cost and
-- gross margin from the order lines.
with

linked as (
    select * from {{ ref('int_customers__linked') }}
    where source = 'shop'
),

orders as (
    select * from {{ ref('stg_shop__orders') }}
),

order_items as (
    select * from {{ ref('stg_shop__order_items') }}
),

products as (
    select * from {{ ref('stg_shop__products') }}
),

order_totals as (
    select
        order_items.order_id,
        count(*) as line_count,
        sum(order_items.quantity) as unit_count,
        sum(order_items.quantity * order_items.unit_price) as revenue,
        sum(order_items.quantity * products.unit_cost) as cost,
    from order_items
    inner join products
        on order_items.product_id = products.product_id
    group by 1
),

final as (
    select
        orders.order_id,
        linked.customer_id,
        orders.shop_customer_id,
        orders.ordered_at,
        orders.order_status,
        orders.sales_channel,
        orders.is_completed,
        coalesce(order_totals.line_count, 0) as line_count,
        coalesce(order_totals.unit_count, 0) as unit_count,
        coalesce(order_totals.revenue, 0) as revenue,
        coalesce(order_totals.cost, 0) as cost,
        coalesce(order_totals.revenue, 0) - coalesce(order_totals.cost, 0) as gross_margin,
    from orders
    left join order_totals
        on orders.order_id = order_totals.order_id
    left join linked
        on linked.source_key = cast(orders.shop_customer_id as varchar)
)

select * from final
