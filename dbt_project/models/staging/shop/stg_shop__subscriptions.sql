with

source as (
    {{ latest_version(source('shop', 'shop_subscriptions'), 'subscription_id') }}
),

renamed as (
    select
        cast(subscription_id as bigint) as subscription_id,
        cast(customer_id as bigint) as shop_customer_id,
        plan as subscription_plan,
        status as subscription_status,
        cast(monthly_price as decimal(18, 2)) as monthly_price,
        {{ to_utc('started_at') }} as started_at,
        {{ to_utc('cancelled_at') }} as cancelled_at,
        cancel_reason,
        status = 'active' as is_active,
        {{ to_utc('updated_at') }} as updated_at,
    from source
)

select * from renamed
