{#- What each customer's completed orders before an as-of date say, for one or many as-of dates
    at once: one row per (as_of_date, customer who had ordered by then). The current-state marts
    pass one date and customer_monthly_history one per month, so the lifecycle stages and RFM
    scores of the history are computed exactly like today's, in one pass (a join of the dates
    to the orders, not a query per month).
    `orders`: completed orders with customer_id, ordered_at (UTC) and revenue.
    `as_of_dates`: a relation with a date column as_of_date; orders count when placed before it. -#}
{% macro customer_order_state(orders, as_of_dates) -%}
    {%- set rfm_window_days = var('rfm_window_days') -%}
    {%- set recent_days = var('lifecycle_recent_order_days', 365) -%}
    with

    order_times as (
        -- one row per customer and order time, so that the previous order of every time is
        -- well defined: orders placed at the same instant are zero days apart
        select
            customer_id,
            ordered_at,
            count(*) as order_count,
            sum(revenue) as revenue,
        from {{ orders }}
        group by 1, 2
    ),

    order_times_with_previous as (
        select
            *,
            case
                when order_count > 1 then ordered_at
                else lag(ordered_at) over (partition by customer_id order by ordered_at)
            end as previous_ordered_at,
        from order_times
    )

    select
        as_of_dates.as_of_date,
        orders.customer_id,
        min(orders.ordered_at) as first_ordered_at,
        max(orders.ordered_at) as last_ordered_at,
        -- the order before the last one (NULL after a single order)
        arg_max_null(orders.previous_ordered_at, orders.ordered_at) as previous_ordered_at,
        cast(sum(orders.order_count) as integer) as order_count,
        sum(orders.revenue) as revenue,
        cast(coalesce(sum(orders.order_count) filter (
            where orders.ordered_at >= as_of_dates.as_of_date - {{ recent_days }}
        ), 0) as integer) as recent_order_count,
        -- the RFM window: [as_of_date - rfm_window_days, as_of_date)
        as_of_dates.as_of_date - {{ rfm_window_days }} as rfm_window_start_date,
        cast(coalesce(sum(orders.order_count) filter (
            where orders.ordered_at >= as_of_dates.as_of_date - {{ rfm_window_days }}
        ), 0) as integer) as rfm_order_count,
        coalesce(sum(orders.revenue) filter (
            where orders.ordered_at >= as_of_dates.as_of_date - {{ rfm_window_days }}
        ), 0) as rfm_revenue,
    from order_times_with_previous as orders
    inner join {{ as_of_dates }} as as_of_dates
        on orders.ordered_at < as_of_dates.as_of_date
    group by as_of_dates.as_of_date, orders.customer_id
{%- endmacro %}
