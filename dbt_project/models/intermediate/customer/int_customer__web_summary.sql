-- One row per customer with a linked web device that had events before as_of_date: sessions
-- (a new one after more than 30 minutes without an event on the device), the last visit and
-- the three product categories viewed most.
with

identity as (
    select * from {{ ref('int_customers__linked') }}
),

events as (
    select * from {{ ref('stg_web__events') }}
    where occurred_at < {{ as_of_date() }}
),

device_events as (
    select
        identity.customer_id,
        events.anonymous_id,
        events.event_type,
        events.product_category,
        events.occurred_at,
        lag(events.occurred_at) over (
            partition by events.anonymous_id order by events.occurred_at
        ) as previous_occurred_at,
    from events
    inner join identity
        on identity.source = 'web'
        and identity.source_key = events.anonymous_id
),

visits as (
    select
        customer_id,
        -- exactly 30 minutes of inactivity continues the session; more starts a new one
        count(*) filter (
            where previous_occurred_at is null
                or occurred_at - previous_occurred_at > interval 30 minutes
        ) as web_session_count,
        count(*) as web_event_count,
        max(occurred_at) as last_web_visit_at,
    from device_events
    group by 1
),

category_views as (
    select
        customer_id,
        product_category,
        count(*) as view_count,
    from device_events
    where event_type = 'product_view'
        and product_category is not null
    group by 1, 2
),

ranked_categories as (
    select
        *,
        row_number() over (
            partition by customer_id order by view_count desc, product_category
        ) as category_rank,
    from category_views
),

top_categories as (
    select
        customer_id,
        string_agg(product_category, ', ' order by category_rank) as top_viewed_categories,
    from ranked_categories
    where category_rank <= 3
    group by 1
),

final as (
    select
        visits.customer_id,
        visits.web_session_count,
        visits.web_event_count,
        visits.last_web_visit_at,
        top_categories.top_viewed_categories,
    from visits
    left join top_categories
        on visits.customer_id = top_categories.customer_id
)

select * from final
