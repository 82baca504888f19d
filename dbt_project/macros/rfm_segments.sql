{#- RFM scores and named segment of every buyer in `order_state` (the output of
    customer_order_state), ranked within each `partition_by` group (e.g. as_of_date for the
    monthly history; none for one date). Shared by customer_rfm and customer_monthly_history.

    Buyers with a completed order in the RFM window are ranked: recency is the days since the
    last order, frequency and monetary the window's orders and revenue. A score is the
    ranked_bucket quintile with ties='worse', floor(5 * below / n) + 1 in integer arithmetic
    with below = buyers strictly worse: tied values share the lower score (half the buyers
    have one order: they all score f = 1) and quintile edges are exact.
    Buyers whose last order is older than the window are not ranked: they are below every
    ranked buyer on all three axes and get 1, 1, 1. The segment is the seed's
    (r_score, fm_score) cell, fm_score being the mean of f and m rounded half up. -#}
{% macro rfm_segments(order_state, segment_map, partition_by=none) -%}
    with

    buyers as (
        select
            *,
            as_of_date - cast(last_ordered_at as date) as recency_days,
            rfm_order_count as frequency,
            rfm_revenue as monetary,
            rfm_order_count > 0 as has_order_in_window,
        from {{ order_state }}
    ),

    scored as (
        select
            *,
            {{ ranked_bucket('recency_days', 5, partition_by, smaller_is_better=true, ties='worse') }}
                as r_score,
            {{ ranked_bucket('frequency', 5, partition_by, ties='worse') }} as f_score,
            {{ ranked_bucket('monetary', 5, partition_by, ties='worse') }} as m_score,
        from buyers
        where has_order_in_window

        union all by name

        select
            *,
            1 as r_score,
            1 as f_score,
            1 as m_score,
        from buyers
        where not has_order_in_window
    ),

    with_fm as (
        select
            *,
            cast(round((f_score + m_score) / 2.0) as integer) as fm_score,
        from scored
    )

    select
        with_fm.*,
        concat(with_fm.r_score, with_fm.f_score, with_fm.m_score) as rfm_cell,
        segment_map.rfm_segment,
    from with_fm
    left join {{ segment_map }} as segment_map
        on with_fm.r_score = segment_map.r_score
        and with_fm.fm_score = segment_map.fm_score
{%- endmacro %}
