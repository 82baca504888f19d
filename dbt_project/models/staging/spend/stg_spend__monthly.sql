with

source as (
    {{ latest_version(source('spend', 'spend_monthly'), 'month_start, channel') }}
),

renamed as (
    select
        cast(month_start as date) as month_start,
        channel as acquisition_channel,
        cast(spend_jpy as decimal(18, 2)) as spend_amount,
    from source
)

select * from renamed
