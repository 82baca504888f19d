-- A table kept up to date incrementally, not a view: it is read by its tests and by the priced
-- orders and order lines, and a view would pick the newest version of all order lines again for
-- each of them. A run reads only the raw rows loaded since the newest load already here
-- (loaded_since_last_run) and replaces the order lines they carry: the shop is read by updated_at,
-- so a later load holds the newer version of an order line.
{{
    config(
        materialized='incremental',
        unique_key='order_item_id',
        incremental_strategy='delete+insert',
        on_schema_change='sync_all_columns',
    )
}}

with

loaded as (
    {{ loaded_since_last_run(source('shop', 'shop_order_items')) }}
),

source as (
    {{ latest_version('loaded', 'order_item_id') }}
),

renamed as (
    select
        cast(order_item_id as bigint) as order_item_id,
        cast(order_id as bigint) as order_id,
        cast(product_id as bigint) as product_id,
        cast(quantity as integer) as quantity,
        cast(unit_price as decimal(18, 2)) as unit_price,
        _loaded_at,
    from source
)

select * from renamed
