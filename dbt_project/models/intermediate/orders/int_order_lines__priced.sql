-- One row per order line with its customer, product category, revenue, cost and gross margin:
-- the grain for profit by product category.
with

orders as (
    select * from {{ ref('int_orders__priced') }}
),

order_items as (
    select * from {{ ref('stg_shop__order_items') }}
),

products as (
    select * from {{ ref('stg_shop__products') }}
),

final as (
    select
        order_items.order_item_id,
        order_items.order_id,
        orders.customer_id,
        orders.ordered_at,
        orders.is_completed,
        orders.sales_channel,
        order_items.product_id,
        products.category as product_category,
        order_items.quantity,
        order_items.quantity * order_items.unit_price as revenue,
        order_items.quantity * products.unit_cost as cost,
        order_items.quantity * (order_items.unit_price - products.unit_cost) as gross_margin,
    from order_items
    inner join orders
        on order_items.order_id = orders.order_id
    inner join products
        on order_items.product_id = products.product_id
)

select * from final
