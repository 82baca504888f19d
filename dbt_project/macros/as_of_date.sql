{#- The date the marts describe: the `as_of_date` var (the Airflow run's logical date), else
    today. Every model measuring "days since" uses this, so a backfill reproduces history. -#}
{% macro as_of_date() -%}
    {%- if var('as_of_date') -%}
        cast('{{ var("as_of_date") }}' as date)
    {%- else -%}
        current_date
    {%- endif -%}
{%- endmacro %}
