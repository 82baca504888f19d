with

source as (
    select * from {{ source('shop', 'shop_customers') }}
),

renamed as (
    select
        cast(customer_id as bigint) as shop_customer_id,
        {{ clean_text('contact_id') }} as contact_id,
        {{ normalise_email('email') }} as email,
        {{ clean_text('full_name') }} as full_name,
        {{ normalise_phone_jp('phone') }} as phone_e164,
        {{ to_utc('created_at') }} as created_at,
    from source
)

select * from renamed
