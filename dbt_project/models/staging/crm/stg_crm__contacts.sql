with

source as (
    select * from {{ source('crm', 'crm_contacts') }}
),

renamed as (
    select
        contact_id,
        {{ clean_text('last_name') }} as last_name,
        {{ clean_text('first_name') }} as first_name,
        {{ clean_text('last_name_kana') }} as last_name_kana,
        {{ clean_text('first_name_kana') }} as first_name_kana,
        {{ normalise_email('email') }} as email,
        {{ normalise_phone_jp('phone') }} as phone_e164,
        {{ normalise_postal_code_jp('postal_code') }} as postal_code,
        {{ clean_text('prefecture') }} as prefecture,
        cast(nullif(trim(birth_date), '') as date) as birth_date,
        cast(email_opt_in as boolean) as is_email_opted_in,
        cast(do_not_contact as boolean) as is_do_not_contact,
        {{ to_utc('created_at') }} as created_at,
        {{ to_utc('updated_at') }} as updated_at,
        _load_id as load_id,
    from source
)

select * from renamed
