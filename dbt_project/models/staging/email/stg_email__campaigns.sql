with

source as (
    {{ latest_version(source('email', 'email_campaigns'), 'campaign_id') }}
),

renamed as (
    select
        campaign_id,
        {{ clean_text('campaign_name') }} as campaign_name,
        channel as campaign_channel,
        objective as campaign_objective,
        cast(cost as decimal(18, 2)) as campaign_cost,
        {{ to_utc('sent_at') }} as sent_at,
        cast(has_control_group as boolean) as has_control_group,
        cast(control_share as decimal(6, 4)) as control_share,
    from source
)

select * from renamed
