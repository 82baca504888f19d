-- Every source record mapped to a customer id. A CRM contact anchors a customer; a shop account
-- joins it by the CRM id it carries, else by the same normalised e-mail (the lowest contact id
-- wins when several contacts share it); an unmatched account anchors a customer of its own.
-- The id is a hash of the anchor's key, so it is the same on every run.
with

contacts as (
    select * from {{ ref('stg_crm__contacts') }}
),

shop_customers as (
    select * from {{ ref('stg_shop__customers') }}
),

contact_by_email as (
    select
        email,
        min(contact_id) as contact_id,
    from contacts
    where email is not null
    group by 1
),

shop_links as (
    select
        shop_customers.shop_customer_id,
        coalesce(contacts.contact_id, contact_by_email.contact_id) as contact_id,
        case
            when contacts.contact_id is not null then 'crm_contact_id'
            when contact_by_email.contact_id is not null then 'email'
            else 'anchor'
        end as link_rule,
    from shop_customers
    left join contacts
        on shop_customers.contact_id = contacts.contact_id
    left join contact_by_email
        on shop_customers.email = contact_by_email.email
),

links as (
    select
        'crm' as source,
        contact_id as source_key,
        'crm:' || contact_id as anchor_key,
        'anchor' as link_rule,
    from contacts

    union all

    select
        'shop' as source,
        cast(shop_customer_id as varchar) as source_key,
        coalesce('crm:' || contact_id, 'shop:' || shop_customer_id) as anchor_key,
        link_rule,
    from shop_links
),

final as (
    select
        'cus_' || substr(md5(anchor_key), 1, 16) as customer_id,
        source,
        source_key,
        anchor_key,
        link_rule,
    from links
)

select * from final
