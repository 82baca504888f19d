{#- Every one of `values` appears in the column at least once (e.g. every named segment is
    used by the mapping seed). Returns the missing values. Like accepted_values, the values are
    pasted into SQL as they are: write a quote twice ("Can''t"). -#}
{% test covers_values(model, column_name, values) %}
with

expected as (
    select unnest([
        {%- for value in values %}
        '{{ value }}'{{ "," if not loop.last }}
        {%- endfor %}
    ]) as expected_value
)

select expected_value
from expected
where expected_value not in (
    select {{ column_name }} from {{ model }} where {{ column_name }} is not null
)
{% endtest %}
