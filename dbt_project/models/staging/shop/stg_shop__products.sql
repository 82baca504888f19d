with

source as (
    {{ latest_version(source('shop', 'shop_products'), 'product_id') }}
),

renamed as (
    select
        cast(product_id as bigint) as product_id,
        sku,
        {{ clean_text('product_name') }} as product_name,
        {{ clean_text('category') }} as category,
        cast(list_price as decimal(18, 2)) as list_price,
        cast(unit_cost as decimal(18, 2)) as unit_cost,
    from source
)

select * from renamed
