{#- The bucket (1 to `buckets`, `buckets` = best) of each row's `value` among the rows of its
    partition (n rows). Larger values are better unless smaller_is_better (recency in days).
    Tied values always share a bucket and bucket edges are exact (n = 10, 5 buckets: two rows
    each); `ties` says which bucket tied rows share:

    - 'better' (value deciles): ceil(buckets * at_or_below / n), at_or_below = rows whose value
      is at or below this one (ties included);
    - 'worse' (RFM scores): floor(buckets * below / n) + 1, below = rows strictly worse. A value
      most rows share (one order: half the buyers) then scores low, as RFM practice expects, and
      the single-purchase segments (New, Promising) can be reached.

    Both come from one rank() (one sort), cheaper than a running count over peers on the
    monthly history's millions of rows. -#}
{% macro ranked_bucket(value, buckets, partition_by=none, smaller_is_better=false, ties='better') -%}
    {%- if ties not in ('better', 'worse') -%}
        {{ exceptions.raise_compiler_error("ranked_bucket: ties must be 'better' or 'worse'") }}
    {%- endif -%}
    {%- set partition -%}
        {%- if partition_by %}partition by {{ partition_by }}{% endif -%}
    {%- endset -%}
    {%- set n = 'count(*) over (' ~ partition ~ ')' -%}
    {%- if ties == 'better' -%}
        {%- set rows_at_or_below -%}
            ({{ n }} - rank() over ({{ partition }} order by {{ value }}
                {{- ' asc' if smaller_is_better else ' desc' }}) + 1)
        {%- endset -%}
        cast(({{ buckets }} * {{ rows_at_or_below }} + {{ n }} - 1) // {{ n }} as integer)
    {%- else -%}
        {%- set rows_below -%}
            (rank() over ({{ partition }} order by {{ value }}
                {{- ' desc' if smaller_is_better else ' asc' }}) - 1)
        {%- endset -%}
        cast({{ buckets }} * {{ rows_below }} // {{ n }} + 1 as integer)
    {%- endif -%}
{%- endmacro %}
