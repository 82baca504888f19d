{#- The bucket (1 to `buckets`, higher = larger value in `order_by`'s order) of each row:
    ceil(buckets * rank / n) in integer arithmetic, rank = rows at or below the value (ties
    included), n = rows in the partition. Tied values always share a bucket and bucket edges
    are exact (n = 10, 5 buckets: two rows each). Used for the RFM quintiles and the value
    deciles, so both treat ties alike. -#}
{% macro ranked_bucket(order_by, buckets, partition_by=none) -%}
    {%- set partition -%}
        {%- if partition_by %}partition by {{ partition_by }}{% endif -%}
    {%- endset -%}
    cast(
        ({{ buckets }} * count(*) over ({{ partition }} order by {{ order_by }})
            + count(*) over ({{ partition }}) - 1)
        // count(*) over ({{ partition }})
    as integer)
{%- endmacro %}
