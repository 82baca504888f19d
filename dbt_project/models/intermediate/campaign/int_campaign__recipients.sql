-- One row per campaign × customer in the campaign's audience: treated (sent the message) or
-- control (drawn into the audience but held out, no send), with the customer's delivery,
-- opens, clicks and unsubscribes for that campaign. A customer with both a send and a holdout
-- for one campaign (two CRM contacts merged into one customer) was reached: treated.
with

customer_events as (
    select * from {{ ref('int_campaign__customer_events') }}
),

rolled_up as (
    select
        campaign_id,
        customer_id,
        any_value(campaign_channel) as campaign_channel,
        any_value(sent_at) as sent_at,
        bool_or(event_type = 'send') as was_sent,
        bool_or(event_type = 'holdout') as was_held_out,
        bool_or(event_type = 'bounce') as has_bounced,
        bool_or(event_type = 'open') as was_opened,
        bool_or(event_type = 'click') as was_clicked,
        bool_or(event_type = 'unsubscribe') as has_unsubscribed,
    from customer_events
    group by 1, 2
),

final as (
    select
        campaign_id,
        customer_id,
        campaign_channel,
        sent_at,
        was_sent as is_treated,
        was_held_out and not was_sent as is_control,
        -- a message counts as delivered when it was sent and did not bounce (hard or soft)
        was_sent and not has_bounced as is_delivered,
        -- engagement only counts for messages sent, so rates never exceed 1
        was_sent and was_opened as is_opened,
        was_sent and was_clicked as is_clicked,
        was_sent and has_unsubscribed as has_unsubscribed,
    from rolled_up
    where was_sent or was_held_out
)

select * from final
