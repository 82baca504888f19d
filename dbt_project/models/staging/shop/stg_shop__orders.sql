with

source as (
    {{ latest_version(source('shop', 'shop_orders'), 'order_id') }}
),

renamed as (
    select
        cast(order_id as bigint) as order_id,
        cast(customer_id as bigint) as shop_customer_id,
        {{ to_utc('ordered_at') }} as ordered_at,
        status as order_status,
        channel as sales_channel,
        status = 'completed' as is_completed,
    from source
)

select * from renamed
