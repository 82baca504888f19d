{#- For each distinct non-null `value` of `relation` (within each `partition_by` group): how many
    rows are strictly worse (`rows_below`) and how many rows there are (`row_count`). Larger
    values are better unless smaller_is_better. Joined back on the value, it gives what
    rank() - 1 gives with ties sharing the lower rank (ranked_bucket's ties='worse'), from a
    count per distinct value instead of a sort of every row with all its columns: the monthly
    history ranks ~8M wide rows per axis at a million customers. -#}
{% macro value_ranks(relation, value, partition_by=none, smaller_is_better=false) -%}
    {%- set partition = 'partition by ' ~ partition_by if partition_by else '' -%}
    select
        {% if partition_by %}{{ partition_by }},{% endif %}
        {{ value }},
        coalesce(sum(value_count) over (
            {{ worse_values_window(value, partition_by, smaller_is_better) }}
        ), 0) as rows_below,
        sum(value_count) over ({{ partition }}) as row_count,
    from (
        select
            {% if partition_by %}{{ partition_by }},{% endif %}
            {{ value }},
            count(*) as value_count,
        from {{ relation }}
        group by all
    )
{%- endmacro %}


{#- The window of the values worse than each one (within `partition_by`), over one row per
    distinct value: a sum of counts over it is value_ranks' rows_below. -#}
{% macro worse_values_window(value, partition_by=none, smaller_is_better=false) -%}
    {% if partition_by %}partition by {{ partition_by }}{% endif %}
    order by {{ value }} {{ 'desc' if smaller_is_better else 'asc' }}
    rows between unbounded preceding and 1 preceding
{%- endmacro %}
