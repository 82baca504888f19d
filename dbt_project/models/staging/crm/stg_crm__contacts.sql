-- A table, not a view: it is read nine times a run (six tests, identity resolution, the golden
-- record, the quality gate), and a view would pick the newest version of every contact and
-- normalise it again for each of them.
{{ config(materialized='table') }}

with

source as (
    {{ latest_version(source('crm', 'crm_contacts'), 'contact_id',
                      'cast(updated_at as timestamptz) desc, _loaded_at desc, _source_row desc') }}
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
        {{ clean_text('company_name') }} as company_name,
        {{ clean_text('industry') }} as industry,
        cast(email_opt_in as boolean) as is_email_opted_in,
        cast(do_not_contact as boolean) as is_do_not_contact,
        coalesce(cast(deletion_requested as boolean), false) as is_deletion_requested,
        {{ to_utc('created_at') }} as created_at,
        {{ to_utc('updated_at') }} as updated_at,
        _load_id as load_id,
    from source
)

select * from renamed
