-- One row per month and customer who had ordered by the month's end, over the last
-- history_months months that ended before as_of_date: the lifecycle stage and RFM segment the
-- customer had then, and the previous month's. Month M is seen as of the first day of M + 1
-- and recomputed from the order history with the same macros as customer_lifecycle and
-- customer_rfm (so the history exists from the first run). One pass: every month's as-of date
-- is joined to the orders at once.
with

orders as (
    select * from {{ ref('int_orders__priced') }}
    where is_completed
        and customer_id is not null
),

segment_map as (
    select * from {{ ref('rfm_segment_map') }}
),

-- one month more than reported, so that the first reported month has a previous stage
month_ends as (
    select
        cast(date_trunc('month', {{ as_of_date() }}) - to_months(months_back) as date)
            as as_of_date,
        months_back,
    from range(0, {{ var('history_months') }} + 1) as months(months_back)
),

order_state as (
    {{ customer_order_state('orders', 'month_ends') }}
),

segments as (
    {{ rfm_segments('order_state', 'segment_map', partition_by='as_of_date') }}
),

staged as (
    select
        cast(segments.as_of_date - to_months(1) as date) as month,
        segments.as_of_date,
        month_ends.months_back,
        segments.customer_id,
        {{ lifecycle_stage(
            'segments.as_of_date',
            'segments.first_ordered_at',
            'segments.last_ordered_at',
            'segments.previous_ordered_at',
            'segments.recent_order_count'
        ) }} as lifecycle_stage,
        segments.rfm_segment,
        segments.r_score,
        segments.f_score,
        segments.m_score,
        segments.has_order_in_window,
        segments.order_count,
        segments.recent_order_count,
        segments.revenue,
        segments.recency_days as days_since_last_order,
    from segments
    inner join month_ends
        on segments.as_of_date = month_ends.as_of_date
),

with_previous as (
    select
        *,
        -- a buyer stays a buyer: every month after the first order has a row, so the previous
        -- row is the previous month
        lag(lifecycle_stage) over customer_months as previous_lifecycle_stage,
        lag(rfm_segment) over customer_months as previous_rfm_segment,
    from staged
    window customer_months as (partition by customer_id order by as_of_date)
),

final as (
    select
        month,
        as_of_date,
        customer_id,
        lifecycle_stage,
        coalesce(previous_lifecycle_stage, 'prospect') as previous_lifecycle_stage,
        rfm_segment,
        previous_rfm_segment,
        r_score,
        f_score,
        m_score,
        has_order_in_window,
        order_count,
        recent_order_count,
        revenue,
        days_since_last_order,
    from with_previous
    where months_back < {{ var('history_months') }}
)

select * from final
