{#- The model has exactly `value` rows (e.g. a mapping seed that must cover every case). -#}
{% test row_count_equals(model, value) %}
select row_count
from (select count(*) as row_count from {{ model }})
where row_count != {{ value }}
{% endtest %}
