-- One row per dimension value: how much gross margin the customers of each prefecture,
-- acquisition channel, industry (business customers only) and product category contributed,
-- from completed orders before as_of_date. `dimension` names the breakdown; each dimension's
-- rows add up to the total margin (a missing value is its own row, '(unknown)').
with

customers as (
    select * from {{ ref('customer_360') }}
),

customer_profit as (
    select * from {{ ref('customer_category_profit') }}
),

by_customer as (
    select
        customer_id,
        sum(revenue) as revenue,
        sum(cost) as cost,
        sum(gross_margin) as gross_margin,
    from customer_profit
    group by 1
),

customer_rows as (
    select
        customers.customer_id,
        coalesce(customers.prefecture, '(unknown)') as prefecture,
        coalesce(customers.acquisition_channel, '(unknown)') as acquisition_channel,
        case when customers.is_business then coalesce(customers.industry, '(unknown)') end
            as industry,
        customers.order_count,
        coalesce(by_customer.revenue, 0) as revenue,
        coalesce(by_customer.cost, 0) as cost,
        coalesce(by_customer.gross_margin, 0) as gross_margin,
    from customers
    left join by_customer
        on customers.customer_id = by_customer.customer_id
),

unpivoted as (
    unpivot customer_rows
    on prefecture, acquisition_channel, industry
    into name dimension value dimension_value
),

by_customer_dimension as (
    select
        dimension,
        dimension_value,
        count(*) as customer_count,
        count(*) filter (where order_count > 0) as buyer_count,
        sum(order_count) as order_count,
        sum(revenue) as revenue,
        sum(cost) as cost,
        sum(gross_margin) as gross_margin,
    from unpivoted
    group by 1, 2
),

by_category as (
    select
        'product_category' as dimension,
        coalesce(product_category, '(unknown)') as dimension_value,
        null::bigint as customer_count,
        -- customer_category_profit has one row per customer and category
        count(*) as buyer_count,
        sum(order_count) as order_count,
        sum(revenue) as revenue,
        sum(cost) as cost,
        sum(gross_margin) as gross_margin,
    from customer_profit
    group by 1, 2
),

combined as (
    select * from by_customer_dimension
    union all
    select * from by_category
),

final as (
    select
        dimension,
        dimension_value,
        customer_count,
        buyer_count,
        order_count,
        revenue,
        cost,
        gross_margin,
        round(gross_margin / nullif(revenue, 0), 4) as margin_rate,
        round(gross_margin / nullif(sum(gross_margin) over (partition by dimension), 0), 4)
            as share_of_gross_margin,
        round(gross_margin / nullif(buyer_count, 0), 0) as gross_margin_per_buyer,
        {{ as_of_date() }} as as_of_date,
    from combined
)

select * from final
