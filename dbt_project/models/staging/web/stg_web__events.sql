with

source as (
    {{ latest_version(source('web', 'web_events'), 'event_id') }}
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
    from source
)

select * from renamed
