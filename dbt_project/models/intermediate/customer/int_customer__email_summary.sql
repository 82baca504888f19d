-- One row per customer with e-mail events before as_of_date: campaigns sent, unique open and
-- click rates (a campaign opened or clicked several times counts once), unsubscribes and hard
-- bounces. Holdouts (control group) are not sends.
with

identity as (
    select * from {{ ref('int_customers__linked') }}
),

events as (
    select * from {{ ref('stg_email__events') }}
    where occurred_at < {{ as_of_date() }}
),

customer_events as (
    select
        identity.customer_id,
        events.campaign_id,
        events.event_type,
        events.is_hard_bounce,
    from events
    inner join identity
        on identity.source = 'crm'
        and identity.source_key = events.contact_id
),

campaigns as (
    select
        customer_id,
        campaign_id,
        bool_or(event_type = 'send') as was_sent,
        bool_or(event_type = 'open') as was_opened,
        bool_or(event_type = 'click') as was_clicked,
        bool_or(event_type = 'unsubscribe') as has_unsubscribed,
        bool_or(is_hard_bounce) as has_hard_bounced,
    from customer_events
    group by 1, 2
),

summary as (
    select
        customer_id,
        count(*) filter (where was_sent) as email_send_count,
        -- only campaigns sent to the customer count, so the rates never exceed 1
        count(*) filter (where was_sent and was_opened) as email_unique_open_count,
        count(*) filter (where was_sent and was_clicked) as email_unique_click_count,
        bool_or(has_unsubscribed) as has_unsubscribed,
        bool_or(has_hard_bounced) as has_hard_bounced,
    from campaigns
    group by 1
),

final as (
    select
        customer_id,
        email_send_count,
        email_unique_open_count,
        email_unique_click_count,
        case when email_send_count > 0
            then round(email_unique_open_count / email_send_count, 4) end as email_open_rate,
        case when email_send_count > 0
            then round(email_unique_click_count / email_send_count, 4) end as email_click_rate,
        has_unsubscribed,
        has_hard_bounced,
    from summary
)

select * from final
