-- One row per campaign event (holdout, send, open, click, bounce, unsubscribe) before
-- as_of_date of a campaign sent before as_of_date, with the recipient's customer id (through the
-- CRM contact in the identity graph) and the campaign's channel and send time. Events of
-- contacts the graph does not hold reach no customer and are left out.
with

identity as (
    select * from {{ ref('int_customers__linked') }}
    where source = 'crm'
),

campaigns as (
    select * from {{ ref('stg_email__campaigns') }}
    where sent_at < {{ as_of_date() }}
),

events as (
    select * from {{ ref('stg_email__events') }}
    where occurred_at < {{ as_of_date() }}
),

final as (
    select
        events.event_id,
        events.campaign_id,
        identity.customer_id,
        events.contact_id,
        campaigns.campaign_channel,
        campaigns.sent_at,
        events.event_type,
        events.is_hard_bounce,
        events.occurred_at,
    from events
    inner join identity
        on events.contact_id = identity.source_key
    inner join campaigns
        on events.campaign_id = campaigns.campaign_id
)

select * from final
