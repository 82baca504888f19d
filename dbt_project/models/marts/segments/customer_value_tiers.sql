-- One row per customer with at least one completed order before as_of_date: lifetime revenue
-- and gross margin, their deciles over all buyers (1 = top tenth) and cumulative shares, and
-- the top-tier flag (revenue deciles 1 and 2: the top 20% of the 80/20 rule).
with

customers as (
    select * from {{ ref('customer_360') }}
),

buyers as (
    select
        customer_id,
        order_count,
        total_revenue as revenue,
        total_gross_margin as gross_margin,
        as_of_date,
    from customers
    where order_count > 0
),

ranked as (
    select
        *,
        -- ranked_bucket gives 10 to the largest values; ties share the better decile
        11 - {{ ranked_bucket('revenue', 10) }} as revenue_decile,
        11 - {{ ranked_bucket('gross_margin', 10) }} as margin_decile,
        -- revenue (margin) of the buyers at or above this one, ties included
        sum(revenue) over (order by revenue desc) as revenue_at_or_above,
        sum(gross_margin) over (order by gross_margin desc) as margin_at_or_above,
        sum(revenue) over () as buyers_revenue,
        sum(gross_margin) over () as buyers_margin,
    from buyers
),

final as (
    select
        customer_id,
        order_count,
        revenue,
        gross_margin,
        revenue_decile,
        margin_decile,
        round(revenue_at_or_above / nullif(buyers_revenue, 0), 6) as cumulative_revenue_share,
        round(margin_at_or_above / nullif(buyers_margin, 0), 6) as cumulative_margin_share,
        revenue_decile <= 2 as is_top_tier,
        as_of_date,
    from ranked
)

select * from final
