-- One row per month, stage at the end of the previous month and stage at the end of the month,
-- with the number of customers who moved so (staying in a stage is a row too). A customer's
-- first month as a buyer comes from 'prospect'. Built on customer_monthly_history.
with

history as (
    select * from {{ ref('customer_monthly_history') }}
),

final as (
    select
        month,
        previous_lifecycle_stage as from_stage,
        lifecycle_stage as to_stage,
        count(*) as customers,
    from history
    group by 1, 2, 3
)

select * from final
