-- One row per customer with at least one completed order before as_of_date: recency, frequency
-- and monetary scores (quintiles, 5 = best) and the named segment from the editable
-- rfm_segment_map seed. Only completed orders in the window [as_of_date - rfm_window_days,
-- as_of_date) are scored; buyers with none there keep a row, unranked, with scores 1, 1, 1
-- (rules in the rfm_segments macro, shared with customer_monthly_history).
with

orders as (
    select * from {{ ref('int_orders__priced') }}
    where is_completed
        and customer_id is not null
),

segment_map as (
    select * from {{ ref('rfm_segment_map') }}
),

as_of as (
    select {{ as_of_date() }} as as_of_date
),

order_state as (
    {{ customer_order_state('orders', 'as_of') }}
),

segments as (
    {{ rfm_segments('order_state', 'segment_map') }}
),

final as (
    select
        customer_id,
        recency_days,
        frequency,
        monetary,
        r_score,
        f_score,
        m_score,
        fm_score,
        rfm_cell,
        rfm_segment,
        has_order_in_window,
        rfm_window_start_date,
        last_ordered_at,
        as_of_date,
    from segments
)

select * from final
