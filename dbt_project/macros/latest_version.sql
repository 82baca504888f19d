{#- Raw tables keep every version of a row (append-only loads): staging keeps the newest version
    of each key, by the given order (default: the most recent load, then the last row in it). -#}
{% macro latest_version(relation, key, order_by='_loaded_at desc, _source_row desc') -%}
    select *
    from {{ relation }}
    qualify row_number() over (partition by {{ key }} order by {{ order_by }}) = 1
{%- endmacro %}
