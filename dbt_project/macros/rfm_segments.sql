{#- RFM scores and named segment of every buyer in `order_state` (the output of
    customer_order_state), ranked within each `partition_by` group (e.g. as_of_date for the
    monthly history; none for one date). Shared by customer_rfm and customer_monthly_history.

    Buyers with a completed order in the RFM window are ranked: recency is the days since the
    last order, frequency and monetary the window's orders and revenue (never null for them). A
    score is the ranked_bucket quintile with ties='worse', floor(5 * below / n) + 1 in integer
    arithmetic with below = buyers strictly worse (counted per distinct value by value_ranks):
    tied values share the lower score (half the buyers have one order: they all score f = 1)
    and quintile edges are exact.
    Buyers whose last order is older than the window are not ranked: they are below every
    ranked buyer on all three axes and get 1, 1, 1. The segment is the seed's
    (r_score, fm_score) cell, fm_score being the mean of f and m rounded half up.

    `ranks`, when given, maps each axis ('r', 'f', 'm') to the value_ranks of the buyers to rank
    among instead of `order_state`'s own (columns `partition_by`, the value, rows_below and
    row_count, covering every value of `order_state`): the incremental monthly history scores
    the few customers it rewrites among all of the month's buyers so. -#}
{% macro rfm_segments(order_state, segment_map, partition_by=none, ranks=none) -%}
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

    ranked as (
        select * from buyers
        where has_order_in_window
    ),

    {%- set axes = rfm_axes() %}
    {% for axis, value, smaller_is_better in axes %}
    {{ axis }}_ranks as (
        {%- if ranks %}
        select * from {{ ranks[axis] }}
        {%- else %}
        {{ value_ranks('ranked', value, partition_by, smaller_is_better=smaller_is_better) }}
        {%- endif %}
    ),
    {% endfor %}

    scored as (
        -- the quintile of ranked_bucket(value, 5, partition_by, ties='worse'), from value_ranks
        select
            ranked.*,
            {%- for axis, value, smaller_is_better in axes %}
            {{ rfm_quintile(axis ~ '_ranks.rows_below', axis ~ '_ranks.row_count') }}
                as {{ axis }}_score,
            {%- endfor %}
        from ranked
        {%- for axis, value, smaller_is_better in axes %}
        inner join {{ axis }}_ranks
            on ranked.{{ value }} = {{ axis }}_ranks.{{ value }}
            {%- if partition_by %}
            and ranked.{{ partition_by }} = {{ axis }}_ranks.{{ partition_by }}
            {%- endif %}
        {%- endfor %}

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


{#- The RFM axes: (score prefix, ranked value, whether smaller is better). -#}
{% macro rfm_axes() -%}
    {{ return([
        ('r', 'recency_days', true),
        ('f', 'frequency', false),
        ('m', 'monetary', false),
    ]) }}
{%- endmacro %}


{#- The RFM score of a value with `rows_below` buyers worse than it among `row_count`: its
    quintile with ties sharing the lower one, floor(5 * below / n) + 1 in integer arithmetic. -#}
{% macro rfm_quintile(rows_below, row_count) -%}
    cast(5 * {{ rows_below }} // {{ row_count }} + 1 as integer)
{%- endmacro %}
