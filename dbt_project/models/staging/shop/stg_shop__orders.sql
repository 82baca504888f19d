-- A table kept up to date incrementally, not a view: it is read by its tests and by the priced
-- orders and order lines, and a view would pick the newest version of all orders again for each of
-- them. A run reads only the raw rows loaded since the newest load already here
-- (loaded_since_last_run) and replaces the orders they carry: the shop is read by updated_at, so a
-- later load holds the newer version of an order.
{{
    config(
        materialized='incremental',
        unique_key='order_id',
        incremental_strategy='delete+insert',
        on_schema_change='sync_all_columns',
    )
}}

with

loaded as (
    {{ loaded_since_last_run(source('shop', 'shop_orders')) }}
),

source as (
    {{ latest_version('loaded', 'order_id') }}
),

renamed as (
    select
        cast(order_id as bigint) as order_id,
        cast(customer_id as bigint) as shop_customer_id,
        {{ to_utc('ordered_at') }} as ordered_at,
        status as order_status,
        channel as sales_channel,
        status = 'completed' as is_completed,
        _loaded_at,
    from source
)

select * from renamed
