-- One row per customer with a subscription (定期購入) started before as_of_date: active and
-- cancelled contracts and the tenure, each contract in the state it was in on as_of_date.
with

identity as (
    select * from {{ ref('int_customers__linked') }}
),

subscriptions as (
    select * from {{ ref('stg_shop__subscriptions') }}
    where started_at < {{ as_of_date() }}
),

subscription_states as (
    select
        identity.customer_id,
        subscriptions.subscription_id,
        subscriptions.started_at,
        subscriptions.cancelled_at,
        -- staging keeps the current status: a contract cancelled on or after as_of_date was
        -- still running then (paused contracts keep their status: no pause history exists)
        case
            when subscriptions.cancelled_at < {{ as_of_date() }} then 'cancelled'
            when subscriptions.subscription_status = 'cancelled' then 'active'
            else subscriptions.subscription_status
        end as status_as_of,
    from subscriptions
    inner join identity
        on identity.source = 'shop'
        and identity.source_key = cast(subscriptions.shop_customer_id as varchar)
),

summary as (
    select
        customer_id,
        count(*) as subscription_count,
        count(*) filter (where status_as_of = 'active') as active_subscription_count,
        count(*) filter (where status_as_of = 'cancelled') as cancelled_subscription_count,
        -- active or paused: the customer is still a subscriber
        count(*) filter (where status_as_of != 'cancelled') as running_subscription_count,
        min(started_at) as first_subscribed_at,
        max(cancelled_at) filter (where status_as_of = 'cancelled') as last_cancelled_at,
    from subscription_states
    group by 1
),

final as (
    select
        customer_id,
        subscription_count,
        active_subscription_count,
        active_subscription_count > 0 as has_active_subscription,
        cancelled_subscription_count,
        first_subscribed_at,
        last_cancelled_at,
        -- first start to as_of_date while a contract runs, else to the last cancellation
        case
            when running_subscription_count > 0 then {{ as_of_date() }}
            else cast(last_cancelled_at as date)
        end - cast(first_subscribed_at as date) as subscription_tenure_days,
    from summary
)

select * from final
