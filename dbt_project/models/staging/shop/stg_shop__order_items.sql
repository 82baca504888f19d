with

source as (
    {{ latest_version(source('shop', 'shop_order_items'), 'order_item_id') }}
),

renamed as (
    select
        cast(order_item_id as bigint) as order_item_id,
        cast(order_id as bigint) as order_id,
        cast(product_id as bigint) as product_id,
        cast(quantity as integer) as quantity,
        cast(unit_price as decimal(18, 2)) as unit_price,
    from source
)

select * from renamed
