-- One golden record per customer: each attribute taken from the source the survivorship rules
-- trust most (see the model's YAML), consent resolved conservatively: an opt-out anywhere wins.
with

linked as (
    select * from {{ ref('int_customers__linked') }}
),

contacts as (
    select * from {{ ref('stg_crm__contacts') }}
),

shop_customers as (
    select * from {{ ref('stg_shop__customers') }}
),

email_summary as (
    select * from {{ ref('int_customer__email_summary') }}
),

blocked as (
    select * from {{ source('identity', 'blocked_identifiers') }}
),

-- CRM and shop records side by side
profile_records as (
    select
        linked.customer_id,
        'crm' as source,
        1 as trust,
        contacts.contact_id,
        null::bigint as shop_customer_id,
        nullif(concat_ws(' ', contacts.last_name, contacts.first_name), '') as full_name,
        nullif(concat_ws(' ', contacts.last_name_kana, contacts.first_name_kana), '')
            as full_name_kana,
        contacts.email,
        contacts.phone_e164,
        contacts.postal_code,
        contacts.prefecture,
        contacts.birth_date,
        contacts.company_name,
        contacts.industry,
        null as acquisition_channel,
        contacts.is_email_opted_in,
        contacts.is_do_not_contact,
        contacts.is_deletion_requested,
        contacts.created_at,
        contacts.updated_at,
    from linked
    inner join contacts
        on linked.source = 'crm' and linked.source_key = contacts.contact_id

    union all

    select
        linked.customer_id,
        'shop' as source,
        2 as trust,
        null as contact_id,
        shop_customers.shop_customer_id,
        shop_customers.full_name,
        shop_customers.full_name_kana,
        shop_customers.email,
        shop_customers.phone_e164,
        shop_customers.postal_code,
        shop_customers.prefecture,
        shop_customers.birth_date,
        null as company_name,
        null as industry,
        shop_customers.acquisition_channel,
        -- a shop account carries no marketing consent: it never opts anyone in
        null::boolean as is_email_opted_in,
        false as is_do_not_contact,
        false as is_deletion_requested,
        shop_customers.created_at,
        shop_customers.updated_at,
    from linked
    inner join shop_customers
        on linked.source = 'shop' and linked.source_key = cast(shop_customers.shop_customer_id as varchar)
),

-- placeholders (blocked identifiers) and malformed e-mails never survive
usable_records as (
    select
        * replace (
            case when email not in (
                    select id_value from blocked where id_type = 'email' and id_value is not null)
                and regexp_full_match(email, '[^@\s]+@[^@\s]+\.[^@\s]+')
                then email end as email,
            case when phone_e164 not in (
                    select id_value from blocked where id_type = 'phone' and id_value is not null)
                then phone_e164 end as phone_e164
        ),
        -- the survivorship order, most trusted source first, then the most recently updated
        -- (a missing time last), as one number: trust * 2^64 less the update time in
        -- microseconds (a 64-bit value). The same order as the pair (trust, -updated_at), whose
        -- comparison made arg_min a fifth of this model's time.
        trust::hugeint * 18446744073709551616
            - coalesce(epoch_us(updated_at), -9223372036854775808) as survivorship_order,
    from profile_records
),

unsubscribed as (
    select customer_id,
    from email_summary
    where has_unsubscribed
),

golden as (
    select
        customer_id,
        -- most trusted source first (CRM, then the shop), then the most recently updated
        min(contact_id) as contact_id,
        min(shop_customer_id) as shop_customer_id,
        count(shop_customer_id) as shop_account_count,
        arg_min(full_name, survivorship_order) filter (where full_name is not null)
            as full_name,
        arg_min(full_name_kana, survivorship_order)
            filter (where full_name_kana is not null) as full_name_kana,
        arg_min(email, survivorship_order) filter (where email is not null) as email,
        arg_min(phone_e164, survivorship_order) filter (where phone_e164 is not null)
            as phone_e164,
        arg_min(birth_date, survivorship_order) filter (where birth_date is not null)
            as birth_date,
        -- people move: the most recent address wins, whichever source has it
        arg_max(postal_code, updated_at) filter (where postal_code is not null) as postal_code,
        arg_max(prefecture, updated_at) filter (where prefecture is not null) as prefecture,
        max(company_name) as company_name,
        max(industry) as industry,
        -- the channel that brought the customer: their first shop account's
        arg_min(acquisition_channel, created_at) filter (where acquisition_channel is not null)
            as acquisition_channel,
        -- consent: opted in only if the CRM says so and nothing anywhere says otherwise
        coalesce(bool_and(is_email_opted_in), false) as crm_email_opted_in,
        bool_or(is_do_not_contact) as is_do_not_contact,
        bool_or(is_deletion_requested) as is_deletion_requested,
        min(created_at) as first_seen_at,
    from usable_records
    group by 1
),

final as (
    select
        golden.customer_id,
        golden.contact_id,
        golden.shop_customer_id,
        golden.shop_account_count,
        golden.full_name,
        golden.full_name_kana,
        golden.email,
        golden.phone_e164,
        golden.postal_code,
        golden.prefecture,
        golden.birth_date,
        golden.company_name,
        golden.industry,
        golden.company_name is not null as is_business,
        golden.acquisition_channel,
        golden.crm_email_opted_in
            and unsubscribed.customer_id is null
            and not golden.is_do_not_contact
            and not golden.is_deletion_requested as is_email_opted_in,
        unsubscribed.customer_id is not null as has_unsubscribed,
        golden.is_do_not_contact,
        golden.is_deletion_requested,
        golden.first_seen_at,
    from golden
    left join unsubscribed
        on golden.customer_id = unsubscribed.customer_id
)

select * from final
