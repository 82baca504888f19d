-- A table, not a view: it is read eight times a run (four tests, the campaign events, the
-- e-mail summary, both churn models), and a view would pick the newest version of each of its
-- 4M events again for each of them.
{{ config(materialized='table') }}

with

source as (
    {{ latest_version(source('email', 'email_events'), 'event_id') }}
),

renamed as (
    select
        event_id,
        campaign_id,
        {{ clean_text('contact_id') }} as contact_id,
        {{ normalise_email('email') }} as email,
        event_type,
        bounce_type,
        event_type = 'bounce' and bounce_type = 'hard' as is_hard_bounce,
        {{ to_utc('occurred_at') }} as occurred_at,
    from source
)

select * from renamed
