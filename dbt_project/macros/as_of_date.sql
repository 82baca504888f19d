{#- The date the marts describe: the `as_of_date` var, else the CRM360_AS_OF_DATE environment
    variable (the pipeline's run date: unlike a changed var, a changed environment variable
    lets dbt re-parse only the files that read it), else today. Every model measuring "days
    since" uses this, so a backfill reproduces history. -#}
{% macro as_of_date() -%}
    {%- set value = var('as_of_date') or env_var('CRM360_AS_OF_DATE', '') -%}
    {%- if value -%}
        cast('{{ value }}' as date)
    {%- else -%}
        current_date
    {%- endif -%}
{%- endmacro %}
