-- One row per customer in customer_360: how often campaigns reached them lately, for contact
-- caps in audience exports. A contact is a `send` event (a message delivered to the sending
-- system; holdouts are not contacts), counted per message. Windows end at as_of_date (00:00
-- UTC, excluded) and start N days earlier (included): [as_of_date - N days, as_of_date).
with

customers as (
    select * from {{ ref('customer_360') }}
),

customer_events as (
    select * from {{ ref('int_campaign__customer_events') }}
),

sends as (
    select
        customer_id,
        campaign_channel,
        occurred_at,
        occurred_at >= {{ as_of_date() }} - to_days(7) as is_last_7_days,
        occurred_at >= {{ as_of_date() }} - to_days(30) as is_last_30_days,
    from customer_events
    where event_type = 'send'
        and occurred_at < {{ as_of_date() }}
),

pressure as (
    select
        customer_id,
        count(*) filter (where is_last_7_days) as send_count_7d,
        count(*) filter (where is_last_30_days) as send_count_30d,
        count(*) filter (where is_last_7_days and campaign_channel = 'email')
            as email_send_count_7d,
        count(*) filter (where is_last_30_days and campaign_channel = 'email')
            as email_send_count_30d,
        count(*) filter (where is_last_7_days and campaign_channel = 'line')
            as line_send_count_7d,
        count(*) filter (where is_last_30_days and campaign_channel = 'line')
            as line_send_count_30d,
        count(*) as send_count_total,
        max(occurred_at) as last_contacted_at,
        max_by(campaign_channel, (occurred_at, campaign_channel)) as last_contacted_channel,
    from sends
    group by 1
),

final as (
    select
        customers.customer_id,
        coalesce(pressure.send_count_7d, 0) as send_count_7d,
        coalesce(pressure.send_count_30d, 0) as send_count_30d,
        coalesce(pressure.email_send_count_7d, 0) as email_send_count_7d,
        coalesce(pressure.email_send_count_30d, 0) as email_send_count_30d,
        coalesce(pressure.line_send_count_7d, 0) as line_send_count_7d,
        coalesce(pressure.line_send_count_30d, 0) as line_send_count_30d,
        coalesce(pressure.send_count_total, 0) as send_count_total,
        pressure.last_contacted_at,
        pressure.last_contacted_channel,
        {{ as_of_date() }} - cast(pressure.last_contacted_at as date) as days_since_last_contact,
        {{ as_of_date() }} as as_of_date,
    from customers
    left join pressure
        on customers.customer_id = pressure.customer_id
)

select * from final
