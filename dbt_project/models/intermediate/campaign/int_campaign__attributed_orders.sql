-- One row per completed order (before as_of_date) credited to a campaign by last touch: among
-- the campaigns sent to the customer (treated, not held out) whose attribution window holds the
-- order, the one sent most recently before it; simultaneous sends by the higher campaign_id.
-- The window is (sent_at, sent_at + attribution_window_days]: an order placed exactly at the
-- send is not credited, one placed exactly N days after it is.
with

recipients as (
    select * from {{ ref('int_campaign__recipients') }}
    where is_treated
),

orders as (
    select * from {{ ref('int_orders__priced') }}
    where is_completed
        and ordered_at < {{ as_of_date() }}
),

touches as (
    select
        orders.order_id,
        orders.customer_id,
        orders.ordered_at,
        orders.revenue,
        orders.gross_margin,
        recipients.campaign_id,
        recipients.sent_at,
    from orders
    inner join recipients
        on orders.customer_id = recipients.customer_id
        and orders.ordered_at > recipients.sent_at
        and orders.ordered_at <= recipients.sent_at
            + to_days({{ var('attribution_window_days') }})
),

final as (
    select
        order_id,
        campaign_id,
        customer_id,
        sent_at,
        ordered_at,
        revenue,
        gross_margin,
        count(*) over (partition by order_id) as touching_campaign_count,
    from touches
    qualify row_number() over (
        partition by order_id
        order by sent_at desc, campaign_id desc
    ) = 1
)

select * from final
