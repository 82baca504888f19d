-- One row per acquisition cohort (the month, UTC, of a customer's first completed order) and
-- month since acquisition (0 = the acquisition month), for the cohorts of the last
-- history_months months and only months that ended before as_of_date: cohort size, customers
-- who ordered in that month, retention rate and the cohort's revenue, in the month and
-- cumulated.
with

orders as (
    select * from {{ ref('int_orders__priced') }}
    where is_completed
        and customer_id is not null
        and ordered_at < date_trunc('month', {{ as_of_date() }})
),

reporting as (
    select
        cast(date_trunc('month', {{ as_of_date() }}) as date) as current_month,
        cast(date_trunc('month', {{ as_of_date() }}) - to_months({{ var('history_months') }})
            as date) as first_cohort_month,
),

order_months as (
    select
        customer_id,
        cast(date_trunc('month', ordered_at) as date) as order_month,
        revenue,
    from orders
),

first_orders as (
    select
        customer_id,
        min(order_month) as cohort_month,
    from order_months
    group by 1
),

cohorts as (
    select
        first_orders.cohort_month,
        count(*) as cohort_size,
    from first_orders
    cross join reporting
    where first_orders.cohort_month >= reporting.first_cohort_month
    group by 1
),

cohort_months as (
    select
        cohorts.cohort_month,
        cohorts.cohort_size,
        cast(months.months_since as integer) as months_since_acquisition,
        cast(cohorts.cohort_month + to_months(months.months_since) as date) as activity_month,
    from cohorts
    cross join range(0, {{ var('history_months') }}) as months(months_since)
    cross join reporting
    where cohorts.cohort_month + to_months(months.months_since) < reporting.current_month
),

activity as (
    select
        first_orders.cohort_month,
        order_months.order_month as activity_month,
        count(distinct order_months.customer_id) as active_customers,
        sum(order_months.revenue) as revenue,
    from order_months
    inner join first_orders
        on order_months.customer_id = first_orders.customer_id
    group by 1, 2
),

final as (
    select
        cohort_months.cohort_month,
        cohort_months.months_since_acquisition,
        cohort_months.activity_month,
        cohort_months.cohort_size,
        coalesce(activity.active_customers, 0) as active_customers,
        round(coalesce(activity.active_customers, 0) / cohort_months.cohort_size, 4)
            as retention_rate,
        coalesce(activity.revenue, 0) as revenue,
        sum(coalesce(activity.revenue, 0)) over cohort_so_far as cumulative_revenue,
        round(sum(coalesce(activity.revenue, 0)) over cohort_so_far / cohort_months.cohort_size, 2)
            as cumulative_revenue_per_customer,
        {{ as_of_date() }} as as_of_date,
    from cohort_months
    left join activity
        on cohort_months.cohort_month = activity.cohort_month
        and cohort_months.activity_month = activity.activity_month
    window cohort_so_far as (
        partition by cohort_months.cohort_month
        order by cohort_months.months_since_acquisition
    )
)

select * from final
