-- Recency, frequency and monetary scores (quintiles, 5 = best) of every customer with at least
-- one completed order, and the named segment from the editable rfm_segment_map seed.
-- A score is ceil(5 × share of buyers at or below the value) in integer arithmetic: tied values
-- always share a score, and quintile edges are exact.
with

customers as (
    select * from {{ ref('customer_360') }}
),

segment_map as (
    select * from {{ ref('rfm_segment_map') }}
),

buyers as (
    select
        customer_id,
        days_since_last_order as recency_days,
        order_count as frequency,
        total_revenue as monetary,
        as_of_date,
    from customers
    where order_count > 0
),

ranked as (
    select
        *,
        count(*) over () as buyer_count,
        -- the default window frame includes ties: rows at or below the current value
        count(*) over (order by recency_days desc) as recency_rank,
        count(*) over (order by frequency) as frequency_rank,
        count(*) over (order by monetary) as monetary_rank,
    from buyers
),

scored as (
    select
        *,
        cast((5 * recency_rank + buyer_count - 1) // buyer_count as integer) as r_score,
        cast((5 * frequency_rank + buyer_count - 1) // buyer_count as integer) as f_score,
        cast((5 * monetary_rank + buyer_count - 1) // buyer_count as integer) as m_score,
    from ranked
),

final as (
    select
        scored.customer_id,
        scored.recency_days,
        scored.frequency,
        scored.monetary,
        scored.r_score,
        scored.f_score,
        scored.m_score,
        cast(round((scored.f_score + scored.m_score) / 2.0) as integer) as fm_score,
        concat(scored.r_score, scored.f_score, scored.m_score) as rfm_cell,
        segment_map.rfm_segment,
        scored.as_of_date,
    from scored
    left join segment_map
        on scored.r_score = segment_map.r_score
        and cast(round((scored.f_score + scored.m_score) / 2.0) as integer) = segment_map.fm_score
)

select * from final
