-- One row per customer: profile and consent (CRM first, shop account as fallback) and order
-- history as of the run's date.
with

identity as (
    select * from {{ ref('int_customers__linked') }}
),

contacts as (
    select * from {{ ref('stg_crm__contacts') }}
),

shop_customers as (
    select * from {{ ref('stg_shop__customers') }}
),

orders as (
    select * from {{ ref('int_orders__priced') }}
    where ordered_at < {{ as_of_date() }}
),

customer_records as (
    select
        customer_id,
        max(case when source = 'crm' then source_key end) as contact_id,
        min(case when source = 'shop' then cast(source_key as bigint) end) as shop_customer_id,
        count(*) filter (where source = 'shop') as shop_account_count,
    from identity
    group by 1
),

order_history as (
    select
        identity.customer_id,
        count(*) filter (where orders.is_completed) as order_count,
        count(*) filter (where not orders.is_completed) as cancelled_order_count,
        coalesce(sum(orders.revenue) filter (where orders.is_completed), 0) as total_revenue,
        coalesce(sum(orders.gross_margin) filter (where orders.is_completed), 0) as total_gross_margin,
        min(orders.ordered_at) filter (where orders.is_completed) as first_ordered_at,
        max(orders.ordered_at) filter (where orders.is_completed) as last_ordered_at,
    from orders
    inner join identity
        on identity.source = 'shop'
        and identity.source_key = cast(orders.shop_customer_id as varchar)
    group by 1
),

profiles as (
    select
        customer_records.customer_id,
        customer_records.contact_id,
        customer_records.shop_customer_id,
        customer_records.shop_account_count,
        coalesce(
            nullif(concat_ws(' ', contacts.last_name, contacts.first_name), ''),
            shop_customers.full_name
        ) as full_name,
        nullif(concat_ws(' ', contacts.last_name_kana, contacts.first_name_kana), '') as full_name_kana,
        coalesce(contacts.email, shop_customers.email) as email,
        coalesce(contacts.phone_e164, shop_customers.phone_e164) as phone_e164,
        contacts.postal_code,
        contacts.prefecture,
        contacts.birth_date,
        -- consent is only ever given in the CRM: a shop-only customer has none
        coalesce(contacts.is_email_opted_in, false) as is_email_opted_in,
        coalesce(contacts.is_do_not_contact, false) as is_do_not_contact,
        least(contacts.created_at, shop_customers.created_at) as first_seen_at,
    from customer_records
    left join contacts
        on customer_records.contact_id = contacts.contact_id
    left join shop_customers
        on customer_records.shop_customer_id = shop_customers.shop_customer_id
),

final as (
    select
        -- identity
        profiles.customer_id,
        profiles.contact_id,
        profiles.shop_customer_id,
        profiles.shop_account_count,

        -- profile
        profiles.full_name,
        profiles.full_name_kana,
        profiles.email,
        profiles.phone_e164,
        profiles.postal_code,
        profiles.prefecture,
        profiles.birth_date,
        profiles.first_seen_at,

        -- consent
        profiles.is_email_opted_in,
        profiles.is_do_not_contact,
        coalesce(regexp_full_match(profiles.email, '[^@\s]+@[^@\s]+\.[^@\s]+'), false) as has_valid_email,
        coalesce(regexp_full_match(profiles.email, '[^@\s]+@[^@\s]+\.[^@\s]+'), false)
            and profiles.is_email_opted_in
            and not profiles.is_do_not_contact as is_email_contactable,

        -- orders
        coalesce(order_history.order_count, 0) as order_count,
        coalesce(order_history.cancelled_order_count, 0) as cancelled_order_count,
        coalesce(order_history.total_revenue, 0) as total_revenue,
        coalesce(order_history.total_gross_margin, 0) as total_gross_margin,
        case
            when order_history.order_count > 0
                then round(order_history.total_revenue / order_history.order_count, 2)
        end as avg_order_value,
        order_history.first_ordered_at,
        order_history.last_ordered_at,
        {{ as_of_date() }} - cast(order_history.last_ordered_at as date) as days_since_last_order,
        coalesce(order_history.order_count, 0) > 0
            and {{ as_of_date() }} - cast(order_history.last_ordered_at as date) > {{ var('dormant_days') }}
            as is_dormant,

        {{ as_of_date() }} as as_of_date,
    from profiles
    left join order_history
        on profiles.customer_id = order_history.customer_id
)

select * from final
