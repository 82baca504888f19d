with

source as (
    {{ latest_version(source('shop', 'shop_returns'), 'return_id') }}
),

renamed as (
    select
        cast(return_id as bigint) as return_id,
        cast(order_id as bigint) as order_id,
        {{ to_utc('returned_at') }} as returned_at,
        cast(refund_amount as decimal(18, 2)) as refund_amount,
        reason as return_reason,
        {{ to_utc('updated_at') }} as updated_at,
    from source
)

select * from renamed
