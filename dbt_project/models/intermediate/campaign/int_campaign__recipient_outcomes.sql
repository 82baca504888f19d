-- One row per campaign × customer in the audience (int_campaign__recipients) with what the
-- customer bought in the campaign's attribution window, (sent_at, sent_at + N days] with N =
-- attribution_window_days and sent_at the campaign's send time for treated and control alike:
-- every completed order in the window (symmetric, for conversion rates and uplift; an order can
-- fall in the windows of several campaigns) and the orders credited to this campaign by last
-- touch (int_campaign__attributed_orders; each order at most once). Orders on or after
-- as_of_date are not known yet.
with

recipients as (
    select * from {{ ref('int_campaign__recipients') }}
),

orders as (
    select * from {{ ref('int_orders__priced') }}
    where is_completed
        and ordered_at < {{ as_of_date() }}
),

attributed_orders as (
    select * from {{ ref('int_campaign__attributed_orders') }}
),

window_orders as (
    select
        recipients.campaign_id,
        recipients.customer_id,
        count(*) as window_order_count,
        sum(orders.revenue) as window_revenue,
        sum(orders.gross_margin) as window_gross_margin,
    from recipients
    inner join orders
        on recipients.customer_id = orders.customer_id
        and orders.ordered_at > recipients.sent_at
        and orders.ordered_at <= recipients.sent_at
            + to_days({{ var('attribution_window_days') }})
    group by 1, 2
),

attributed as (
    select
        campaign_id,
        customer_id,
        count(*) as attributed_order_count,
        sum(revenue) as attributed_revenue,
        sum(gross_margin) as attributed_gross_margin,
    from attributed_orders
    group by 1, 2
),

final as (
    select
        recipients.campaign_id,
        recipients.customer_id,
        recipients.campaign_channel,
        recipients.sent_at,
        recipients.is_treated,
        recipients.is_control,
        recipients.is_delivered,
        recipients.is_opened,
        recipients.is_clicked,
        recipients.has_unsubscribed,
        coalesce(window_orders.window_order_count, 0) > 0 as has_converted,
        coalesce(window_orders.window_order_count, 0) as window_order_count,
        coalesce(window_orders.window_revenue, 0) as window_revenue,
        coalesce(window_orders.window_gross_margin, 0) as window_gross_margin,
        coalesce(attributed.attributed_order_count, 0) as attributed_order_count,
        coalesce(attributed.attributed_revenue, 0) as attributed_revenue,
        coalesce(attributed.attributed_gross_margin, 0) as attributed_gross_margin,
    from recipients
    left join window_orders
        on recipients.campaign_id = window_orders.campaign_id
        and recipients.customer_id = window_orders.customer_id
    left join attributed
        on recipients.campaign_id = attributed.campaign_id
        and recipients.customer_id = attributed.customer_id
)

select * from final
