-- A table kept up to date incrementally, not a view: the log is by far the largest source, and
-- every reader (identity resolution, the web summary, the churn model, the tests) would
-- otherwise pick the newest version of each of its events again. A run reads only the raw rows
-- loaded since the newest load already here (loaded_since_last_run) and replaces the events
-- they carry: a later load holds the newer version of an event.
{{
    config(
        materialized='incremental',
        unique_key='event_id',
        incremental_strategy='delete+insert',
        on_schema_change='sync_all_columns',
    )
}}

with

loaded as (
    {{ loaded_since_last_run(source('web', 'web_events')) }}
),

source as (
    {{ latest_version('loaded', 'event_id') }}
),

renamed as (
    select
        event_id,
        anonymous_id,
        cast(shop_customer_id as bigint) as shop_customer_id,
        {{ normalise_email('email') }} as email,
        event_type,
        page_url,
        cast(product_id as bigint) as product_id,
        {{ clean_text('category') }} as product_category,
        utm_source,
        utm_medium,
        utm_campaign,
        {{ to_utc('occurred_at') }} as occurred_at,
        _loaded_at,
    from source
)

select * from renamed
