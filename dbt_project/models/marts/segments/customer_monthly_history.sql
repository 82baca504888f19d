-- One row per month and customer who had ordered by the month's end, over the last
-- history_months months that ended before as_of_date: the lifecycle stage and RFM segment the
-- customer had then, and the previous month's. Month M is seen as of the first day of M + 1
-- and recomputed from the order history with the same macros as customer_lifecycle and
-- customer_rfm (so the history exists from the first run). One pass: every month's as-of date
-- is joined to the orders at once.
--
-- Kept incrementally, exactly: a run in the same month as the last one, with the same settings
-- (monthly_history_state.sql), rewrites only the customers whose orders before this month
-- changed (by their fingerprint against the last build's) and the customers whose RFM score
-- moved because of them in some month: their value's count of worse buyers or the month's count
-- of buyers changed so that its quintile changed. The scores are ranked among every buyer of
-- the month, the table's own values for the others. Any other run rebuilds every row.
{%- set incremental = monthly_history_is_current() %}
{{
    config(
        materialized='incremental',
        unique_key='customer_id',
        incremental_strategy='delete+insert',
        on_schema_change='sync_all_columns',
        pre_hook="{% if is_incremental() and not monthly_history_is_current() %}"
                 "delete from {{ this }}{% endif %}",
        post_hook="{{ monthly_history_save_inputs() }}",
    )
}}

with

orders as (
    {{ monthly_history_orders() }}
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

{%- if incremental %}
{%- set axes = rfm_axes() %}

-- the customers whose orders changed since the last build (new, changed or gone)
changed as (
    select coalesce(current_inputs.customer_id, previous_inputs.customer_id) as customer_id,
    from ({{ monthly_history_fingerprints('orders') }}) as current_inputs
    full join {{ monthly_history_inputs_relation() }} as previous_inputs
        on current_inputs.customer_id = previous_inputs.customer_id
    where current_inputs.order_count is distinct from previous_inputs.order_count
        or current_inputs.orders_hash is distinct from previous_inputs.orders_hash
),

changed_state as (
    {{ customer_order_state('(from orders semi join changed using (customer_id))',
                            'month_ends') }}
),

-- the month before the first reported one is not kept in the table: it is computed for every
-- buyer (one month of the full build's work), for the ranking and the first month's previous
-- segment
first_month as (
    select * from month_ends
    where months_back = {{ var('history_months') }}
),

first_month_state as (
    {{ customer_order_state('orders', 'first_month') }}
),

first_month_segments as (
    {{ rfm_segments('first_month_state', 'segment_map', partition_by='as_of_date') }}
),

-- the ranked values of every buyer and reported month as the table has them
previous_values as (
    select
        as_of_date,
        customer_id,
        days_since_last_order as recency_days,
        frequency,
        monetary,
    from {{ this }}
    where has_order_in_window
),

-- ... the changed customers' rows there, and their values now
removed_values as (
    from previous_values
    semi join changed using (customer_id)
),

added_values as (
    select
        as_of_date,
        customer_id,
        as_of_date - cast(last_ordered_at as date) as recency_days,
        rfm_order_count as frequency,
        rfm_revenue as monetary,
    from changed_state
    where rfm_order_count > 0
        and as_of_date != (select as_of_date from first_month)
),
{%- for axis, value, smaller_is_better in axes %}

-- per reported month and {{ value }}: the buyers with that value in the table and now, and the
-- buyers worse than it (value_ranks, before and after in one pass)
{{ axis }}_counts as (
    select as_of_date, {{ value }}, sum(previous_count) as previous_count,
        sum(current_count) as current_count,
    from (
        select as_of_date, {{ value }}, count(*) as previous_count, count(*) as current_count,
        from previous_values
        group by all

        union all

        select as_of_date, {{ value }}, 0, -count(*),
        from removed_values
        group by all

        union all

        select as_of_date, {{ value }}, 0, count(*),
        from added_values
        group by all
    )
    group by all
),

{{ axis }}_both_ranks as (
    select
        *,
        coalesce(sum(previous_count) over worse, 0) as previous_below,
        sum(previous_count) over month as previous_n,
        coalesce(sum(current_count) over worse, 0) as current_below,
        sum(current_count) over month as current_n,
    from {{ axis }}_counts
    window
        worse as ({{ worse_values_window(value, 'as_of_date', smaller_is_better) }}),
        month as (partition by as_of_date)
),

-- the (month, value) whose {{ axis }} score the changes moved
{{ axis }}_moved as (
    select as_of_date, {{ value }},
    from {{ axis }}_both_ranks
    where previous_count > 0
        and {{ rfm_quintile('previous_below', 'previous_n') }}
            != {{ rfm_quintile('current_below', 'nullif(current_n, 0)') }}
),

-- what the rewritten rows are ranked on: every month's buyers now
{{ axis }}_ranks as (
    select as_of_date, {{ value }}, current_below as rows_below, current_n as row_count,
    from {{ axis }}_both_ranks
    where current_count > 0

    union all by name

    {{ value_ranks('(from first_month_segments where has_order_in_window)', value,
                   'as_of_date', smaller_is_better) }}
),
{%- endfor %}

-- the customers whose orders did not change but whose rows must be rewritten: a score moved in
-- some month, or the first reported month's previous segment did
rescored as (
    select customer_id,
    from (
        {%- for axis, value, smaller_is_better in axes %}
        select customer_id from previous_values
        semi join {{ axis }}_moved using (as_of_date, {{ value }})
        union
        {%- endfor %}
        select history.customer_id,
        from {{ this }} as history
        left join first_month_segments using (customer_id)
        where history.as_of_date = (select cast(as_of_date + to_months(1) as date) from first_month)
            and history.previous_rfm_segment is distinct from first_month_segments.rfm_segment
    )
    anti join changed using (customer_id)
),

order_state as (
    from changed_state

    union all by name

    from (
        {{ customer_order_state('(from orders semi join rescored using (customer_id))',
                                'month_ends') }}
    )
),

segments as (
    {{ rfm_segments('order_state', 'segment_map', partition_by='as_of_date',
                    ranks={'r': 'r_ranks', 'f': 'f_ranks', 'm': 'm_ranks'}) }}
),
{%- else %}

order_state as (
    {{ customer_order_state('orders', 'month_ends') }}
),

segments as (
    {{ rfm_segments('order_state', 'segment_map', partition_by='as_of_date') }}
),
{%- endif %}

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
        segments.frequency,
        segments.monetary,
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
        frequency,
        monetary,
        has_order_in_window,
        order_count,
        recent_order_count,
        revenue,
        days_since_last_order,
    from with_previous
    where months_back < {{ var('history_months') }}
)

select * from final
