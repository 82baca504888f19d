{#- Use the folder's schema name as is (staging, intermediate, marts), not <target>_<name>,
    so analysts query marts.customer_360 whatever the target. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}{{ target.schema }}{%- else -%}{{ custom_schema_name | trim }}{%- endif -%}
{%- endmacro %}
