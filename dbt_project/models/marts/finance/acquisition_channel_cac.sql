-- One row per acquisition channel × month: marketing spend, the customers the channel acquired
-- that month (first completed order in the month), the cost of acquiring each (CAC), their
-- lifetime value in gross margin (realised to date + predicted over the LTV horizon) and
-- LTV:CAC. Months run from the earliest spend or acquisition to the last full month before
-- as_of_date.
with

spend as (
    select * from {{ ref('stg_spend__monthly') }}
    where month_start < date_trunc('month', {{ as_of_date() }})
),

customers as (
    select * from {{ ref('customer_360') }}
),

ltv as (
    select * from {{ ref('customer_ltv') }}
),

acquired as (
    select
        date_trunc('month', customers.first_ordered_at)::date as month_start,
        coalesce(customers.acquisition_channel, '(unknown)') as acquisition_channel,
        count(*) as new_customer_count,
        sum(ltv.historical_gross_margin) as historical_gross_margin,
        sum(ltv.predicted_gross_margin_ltv) as predicted_gross_margin,
    from customers
    inner join ltv
        on customers.customer_id = ltv.customer_id
    where customers.first_ordered_at < date_trunc('month', {{ as_of_date() }})
    group by 1, 2
),

spend_by_month as (
    select
        month_start,
        acquisition_channel,
        sum(spend_amount) as spend_amount,
    from spend
    group by 1, 2
),

final as (
    select
        coalesce(spend_by_month.month_start, acquired.month_start) as month_start,
        coalesce(spend_by_month.acquisition_channel, acquired.acquisition_channel)
            as acquisition_channel,
        spend_by_month.spend_amount,
        coalesce(acquired.new_customer_count, 0) as new_customer_count,
        round(spend_by_month.spend_amount / nullif(acquired.new_customer_count, 0), 0) as cac,
        round(acquired.historical_gross_margin / acquired.new_customer_count, 0)
            as avg_historical_gross_margin,
        round(
            (acquired.historical_gross_margin + acquired.predicted_gross_margin)
            / acquired.new_customer_count, 0
        ) as avg_ltv_gross_margin,
        -- spend that acquired nobody returns nothing: 0, not unknown
        round(
            coalesce(acquired.historical_gross_margin + acquired.predicted_gross_margin, 0)
            / nullif(spend_by_month.spend_amount, 0), 2
        ) as ltv_to_cac,
        {{ as_of_date() }} as as_of_date,
    from spend_by_month
    full join acquired
        on spend_by_month.month_start = acquired.month_start
        and spend_by_month.acquisition_channel = acquired.acquisition_channel
)

select * from final
