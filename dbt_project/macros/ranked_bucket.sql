{#- The bucket (1 to `buckets`, `buckets` = best) of each row's `value` among the rows of its
    partition: ceil(buckets * rank / n) in integer arithmetic, rank = rows whose value is at or
    below this one in the order from worst to best (ties included), n = rows in the partition.
    Larger values are better unless smaller_is_better (recency in days). Tied values always
    share a bucket (the better one) and bucket edges are exact (n = 10, 5 buckets: two rows
    each). Used for the RFM quintiles and the value deciles, so both treat ties alike.
    rank is n - (rows strictly better) = n - rank() + 1 over the best-first order: one sort,
    cheaper than a running count over peers on the monthly history's millions of rows. -#}
{% macro ranked_bucket(value, buckets, partition_by=none, smaller_is_better=false) -%}
    {%- set partition -%}
        {%- if partition_by %}partition by {{ partition_by }}{% endif -%}
    {%- endset -%}
    {%- set rows_at_or_below -%}
        (count(*) over ({{ partition }})
            - rank() over ({{ partition }} order by {{ value }}
                {{- ' asc' if smaller_is_better else ' desc' }}) + 1)
    {%- endset -%}
    cast(
        ({{ buckets }} * {{ rows_at_or_below }} + count(*) over ({{ partition }}) - 1)
        // count(*) over ({{ partition }})
    as integer)
{%- endmacro %}
