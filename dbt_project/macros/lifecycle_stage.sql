{#- The lifecycle stage of a customer on an as-of date, from the columns of
    customer_order_state (days counted between UTC dates). Shared by customer_lifecycle and
    customer_monthly_history so that the history is classified like today. Thresholds are the
    `lifecycle` var; precedence (dbt_project.yml): churned, dormant, at_risk by days since the
    last order, then among recent buyers reactivated, new, loyal, repeat, active; no order:
    prospect. A buyer is recent while the last order is at most both active_days and
    at_risk_days ago (the two are equal by default). -#}
{% macro lifecycle_stage(as_of_date, first_ordered_at, last_ordered_at, previous_ordered_at,
                         recent_order_count) -%}
    {%- set cfg = var('lifecycle') -%}
    {%- if not (cfg['at_risk_days'] < cfg['dormant_days'] < cfg['churned_days']) -%}
        {{ exceptions.raise_compiler_error(
            "lifecycle var: need at_risk_days < dormant_days < churned_days, got "
            ~ cfg['at_risk_days'] ~ ", " ~ cfg['dormant_days'] ~ ", " ~ cfg['churned_days']) }}
    {%- endif -%}
    {%- if not (cfg['repeat_orders'] <= cfg['loyal_orders']) -%}
        {{ exceptions.raise_compiler_error(
            "lifecycle var: need repeat_orders <= loyal_orders, got "
            ~ cfg['repeat_orders'] ~ ", " ~ cfg['loyal_orders']) }}
    {%- endif -%}
    {%- set days_since_last -%}
        ({{ as_of_date }} - cast({{ last_ordered_at }} as date))
    {%- endset -%}
    case
        when {{ last_ordered_at }} is null then 'prospect'
        when {{ days_since_last }} > {{ cfg['churned_days'] }} then 'churned'
        when {{ days_since_last }} > {{ cfg['dormant_days'] }} then 'dormant'
        when {{ days_since_last }} > {{ cfg['at_risk_days'] }}
            or {{ days_since_last }} > {{ cfg['active_days'] }} then 'at_risk'
        when cast({{ last_ordered_at }} as date) - cast({{ previous_ordered_at }} as date)
            >= {{ cfg['reactivated_gap_days'] }} then 'reactivated'
        when {{ as_of_date }} - cast({{ first_ordered_at }} as date)
            <= {{ cfg['new_days'] }} then 'new'
        when {{ recent_order_count }} >= {{ cfg['loyal_orders'] }} then 'loyal'
        when {{ recent_order_count }} >= {{ cfg['repeat_orders'] }} then 'repeat'
        else 'active'
    end
{%- endmacro %}
