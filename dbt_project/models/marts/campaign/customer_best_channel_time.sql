-- One row per customer (every customer in customer_360): the campaign channel they respond to
-- best and the hour and weekday (Asia/Tokyo) at which they open and click, from their campaign
-- history before as_of_date. Customers with too little history get the population's best
-- (is_channel_fallback, is_time_fallback) so every customer has a value to activate on. With no
-- campaign history at all the population has none either: the channel is then e-mail (the
-- rule's tie-break) and the time null, and every customer still has their row.
{%- set min_events = var('best_time_min_events', 3) %}
with

customers as (
    select * from {{ ref('customer_360') }}
),

recipients as (
    select * from {{ ref('int_campaign__recipients') }}
    where is_treated
),

customer_events as (
    select * from {{ ref('int_campaign__customer_events') }}
),

-- channel: unique engagement rate (campaigns opened or clicked / campaigns sent) per channel

channel_engagement as (
    select
        customer_id,
        campaign_channel,
        count(*) as send_count,
        count(*) filter (where is_opened or is_clicked) as engaged_count,
    from recipients
    group by 1, 2
),

-- best first: higher rate, then more engaged campaigns, then e-mail (the cheaper message)
customer_channel as (
    select
        customer_id,
        campaign_channel as preferred_channel,
    from channel_engagement
    qualify row_number() over (
        partition by customer_id
        order by
            engaged_count / send_count desc,
            engaged_count desc,
            campaign_channel = 'email' desc,
            campaign_channel
    ) = 1
),

population_channel as (
    select
        campaign_channel as preferred_channel,
    from channel_engagement
    group by 1
    order by
        sum(engaged_count) / sum(send_count) desc,
        sum(engaged_count) desc,
        campaign_channel = 'email' desc,
        campaign_channel
    limit 1
),

channel_counts as (
    select
        customer_id,
        coalesce(sum(send_count) filter (where campaign_channel = 'email'), 0) as email_send_count,
        coalesce(sum(engaged_count) filter (where campaign_channel = 'email'), 0)
            as email_engaged_count,
        coalesce(sum(send_count) filter (where campaign_channel = 'line'), 0) as line_send_count,
        coalesce(sum(engaged_count) filter (where campaign_channel = 'line'), 0)
            as line_engaged_count,
    from channel_engagement
    group by 1
),

-- time: opens and clicks in Japan time

engagements as (
    select
        customer_id,
        occurred_at,
        (occurred_at at time zone 'UTC') at time zone 'Asia/Tokyo' as occurred_at_jst,
    from customer_events
    where event_type in ('open', 'click')
),

engagement_slots as (
    select
        customer_id,
        occurred_at,
        hour(occurred_at_jst) as send_hour,
        isodow(occurred_at_jst) as send_weekday,
    from engagements
),

customer_engagement as (
    select
        customer_id,
        count(*) as engagement_event_count,
    from engagement_slots
    group by 1
),

hour_counts as (
    select
        customer_id,
        send_hour,
        count(*) as event_count,
        max(occurred_at) as last_occurred_at,
    from engagement_slots
    group by 1, 2
),

weekday_counts as (
    select
        customer_id,
        send_weekday,
        count(*) as event_count,
        max(occurred_at) as last_occurred_at,
    from engagement_slots
    group by 1, 2
),

-- the mode; ties go to the slot engaged in most recently, then the earliest slot
customer_hour as (
    select
        customer_id,
        send_hour,
    from hour_counts
    qualify row_number() over (
        partition by customer_id
        order by event_count desc, last_occurred_at desc, send_hour
    ) = 1
),

customer_weekday as (
    select
        customer_id,
        send_weekday,
    from weekday_counts
    qualify row_number() over (
        partition by customer_id
        order by event_count desc, last_occurred_at desc, send_weekday
    ) = 1
),

population_hour as (
    select
        send_hour,
    from hour_counts
    group by 1
    order by sum(event_count) desc, max(last_occurred_at) desc, send_hour
    limit 1
),

population_weekday as (
    select
        send_weekday,
    from weekday_counts
    group by 1
    order by sum(event_count) desc, max(last_occurred_at) desc, send_weekday
    limit 1
),

chosen as (
    select
        customers.customer_id,
        coalesce(channel_counts.email_send_count, 0) as email_send_count,
        coalesce(channel_counts.email_engaged_count, 0) as email_engaged_count,
        coalesce(channel_counts.line_send_count, 0) as line_send_count,
        coalesce(channel_counts.line_engaged_count, 0) as line_engaged_count,
        customer_channel.preferred_channel is null as is_channel_fallback,
        coalesce(
            customer_channel.preferred_channel, population_channel.preferred_channel, 'email'
        ) as preferred_channel,
        coalesce(customer_engagement.engagement_event_count, 0) as engagement_event_count,
        coalesce(customer_engagement.engagement_event_count, 0) < {{ min_events }}
            as is_time_fallback,
        case
            when coalesce(customer_engagement.engagement_event_count, 0) < {{ min_events }}
                then population_hour.send_hour
            else customer_hour.send_hour
        end as best_send_hour,
        case
            when coalesce(customer_engagement.engagement_event_count, 0) < {{ min_events }}
                then population_weekday.send_weekday
            else customer_weekday.send_weekday
        end as best_send_weekday,
        {{ as_of_date() }} as as_of_date,
    from customers
    left join channel_counts
        on customers.customer_id = channel_counts.customer_id
    left join customer_channel
        on customers.customer_id = customer_channel.customer_id
    left join customer_engagement
        on customers.customer_id = customer_engagement.customer_id
    left join customer_hour
        on customers.customer_id = customer_hour.customer_id
    left join customer_weekday
        on customers.customer_id = customer_weekday.customer_id
    -- left joins: a population without any campaign or engagement has no row
    left join population_channel on true
    left join population_hour on true
    left join population_weekday on true
),

final as (
    select
        -- channel
        chosen.customer_id,
        chosen.preferred_channel,
        chosen.is_channel_fallback,
        chosen.email_send_count,
        chosen.email_engaged_count,
        case when chosen.email_send_count > 0
            then round(chosen.email_engaged_count / chosen.email_send_count, 4)
        end as email_engagement_rate,
        chosen.line_send_count,
        chosen.line_engaged_count,
        case when chosen.line_send_count > 0
            then round(chosen.line_engaged_count / chosen.line_send_count, 4)
        end as line_engagement_rate,

        -- time (Asia/Tokyo)
        chosen.best_send_hour,
        chosen.best_send_weekday,
        ['Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday', 'Sunday'][
            chosen.best_send_weekday
        ] as best_send_weekday_name,
        chosen.is_time_fallback,
        chosen.engagement_event_count,
        coalesce(hour_counts.event_count, 0) as best_hour_event_count,
        coalesce(weekday_counts.event_count, 0) as best_weekday_event_count,

        chosen.as_of_date,
    from chosen
    left join hour_counts
        on chosen.customer_id = hour_counts.customer_id
        and chosen.best_send_hour = hour_counts.send_hour
    left join weekday_counts
        on chosen.customer_id = weekday_counts.customer_id
        and chosen.best_send_weekday = weekday_counts.send_weekday
)

select * from final
