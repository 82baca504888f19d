{#- The raw rows an incremental staging table has not seen: on an incremental run, those loaded
    after the newest load it holds; on a first or full-refresh run, every row. Each load stamps
    its rows with its own start time, and the loads of one source object run one after another,
    so a later load has a later `_loaded_at`. A table built before it kept `_loaded_at` is read
    in full once, and the column added (on_schema_change). -#}
{% macro loaded_since_last_run(relation) -%}
    select * from {{ relation }}
    {%- if is_incremental()
          and '_loaded_at' in (adapter.get_columns_in_relation(this) | map(attribute='name') | list) %}
    where _loaded_at > (select coalesce(max(_loaded_at), '-infinity') from {{ this }})
    {%- endif %}
{%- endmacro %}
