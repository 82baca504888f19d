-- One row per customer (every customer in customer_360): the lifecycle stage on as_of_date
-- (prospect, new, active, repeat, loyal, at_risk, dormant, churned, reactivated) and the
-- order facts it is decided on. Thresholds are the `lifecycle` var; the rules are in the
-- lifecycle_stage macro, shared with customer_monthly_history.
with

customers as (
    select * from {{ ref('customer_360') }}
),

orders as (
    select * from {{ ref('int_orders__priced') }}
    where is_completed
        and customer_id is not null
),

as_of as (
    select {{ as_of_date() }} as as_of_date
),

order_state as (
    {{ customer_order_state('orders', 'as_of') }}
),

final as (
    select
        customers.customer_id,
        {{ lifecycle_stage(
            'as_of.as_of_date',
            'order_state.first_ordered_at',
            'order_state.last_ordered_at',
            'order_state.previous_ordered_at',
            'order_state.recent_order_count'
        ) }} as lifecycle_stage,
        coalesce(order_state.order_count, 0) as order_count,
        coalesce(order_state.recent_order_count, 0) as recent_order_count,
        order_state.first_ordered_at,
        order_state.previous_ordered_at,
        order_state.last_ordered_at,
        as_of.as_of_date - cast(order_state.first_ordered_at as date) as days_since_first_order,
        as_of.as_of_date - cast(order_state.last_ordered_at as date) as days_since_last_order,
        cast(order_state.last_ordered_at as date)
            - cast(order_state.previous_ordered_at as date) as days_between_last_orders,
        as_of.as_of_date,
    from customers
    cross join as_of
    left join order_state
        on customers.customer_id = order_state.customer_id
)

select * from final
