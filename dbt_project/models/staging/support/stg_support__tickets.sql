with

source as (
    {{ latest_version(source('support', 'support_tickets'), 'ticket_id',
                      'cast(updated_at as timestamptz) desc, _loaded_at desc, _source_row desc') }}
),

renamed as (
    select
        ticket_id,
        {{ normalise_email('customer_email') }} as email,
        cast(shop_customer_id as bigint) as shop_customer_id,
        category as ticket_category,
        channel as contact_channel,
        status as ticket_status,
        status in ('open', 'pending') as is_open,
        cast(csat as integer) as csat_score,
        {{ clean_text('subject') }} as subject,
        {{ to_utc('created_at') }} as created_at,
        {{ to_utc('resolved_at') }} as resolved_at,
        {{ to_utc('updated_at') }} as updated_at,
    from source
)

select * from renamed
