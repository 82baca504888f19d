-- One row per customer: the golden profile and consent (survivorship rules in
-- int_customers__golden), order history and the subscription, return, support, web, e-mail and
-- social summaries (int_customer__*), as of the run's date.
with

identity as (
    select * from {{ ref('int_customers__linked') }}
),

golden as (
    select * from {{ ref('int_customers__golden') }}
),

orders as (
    select * from {{ ref('int_orders__priced') }}
    where ordered_at < {{ as_of_date() }}
),

subscriptions as (
    select * from {{ ref('int_customer__subscription_summary') }}
),

returns as (
    select * from {{ ref('int_customer__return_summary') }}
),

support as (
    select * from {{ ref('int_customer__support_summary') }}
),

web as (
    select * from {{ ref('int_customer__web_summary') }}
),

email as (
    select * from {{ ref('int_customer__email_summary') }}
),

social as (
    select * from {{ ref('int_customer__social_summary') }}
),

customers as (
    select distinct customer_id from identity
),

order_history as (
    select
        orders.customer_id,
        count(*) filter (where orders.is_completed) as order_count,
        count(*) filter (where not orders.is_completed) as cancelled_order_count,
        coalesce(sum(orders.revenue) filter (where orders.is_completed), 0) as total_revenue,
        coalesce(sum(orders.gross_margin) filter (where orders.is_completed), 0) as total_gross_margin,
        min(orders.ordered_at) filter (where orders.is_completed) as first_ordered_at,
        max(orders.ordered_at) filter (where orders.is_completed) as last_ordered_at,
    from orders
    group by 1
),

profiles as (
    select
        customers.customer_id,
        golden.contact_id,
        golden.shop_customer_id,
        coalesce(golden.shop_account_count, 0) as shop_account_count,
        golden.full_name,
        golden.full_name_kana,
        golden.email,
        golden.phone_e164,
        golden.postal_code,
        golden.prefecture,
        golden.birth_date,
        golden.company_name,
        golden.industry,
        coalesce(golden.is_business, false) as is_business,
        golden.acquisition_channel,
        golden.first_seen_at,
        -- consent (survivorship: an opt-out anywhere wins; no CRM record, no consent)
        coalesce(golden.is_email_opted_in, false) as is_email_opted_in,
        coalesce(golden.has_unsubscribed, false) as has_unsubscribed,
        coalesce(golden.is_do_not_contact, false) as is_do_not_contact,
        coalesce(golden.is_deletion_requested, false) as is_deletion_requested,
    from customers
    left join golden
        on customers.customer_id = golden.customer_id
),

final as (
    select
        -- identity
        profiles.customer_id,
        profiles.contact_id,
        profiles.shop_customer_id,
        profiles.shop_account_count,

        -- profile
        profiles.full_name,
        profiles.full_name_kana,
        profiles.email,
        profiles.phone_e164,
        profiles.postal_code,
        profiles.prefecture,
        profiles.birth_date,
        profiles.company_name,
        profiles.industry,
        profiles.is_business,
        profiles.acquisition_channel,
        profiles.first_seen_at,

        -- consent
        profiles.is_email_opted_in,
        profiles.has_unsubscribed,
        profiles.is_do_not_contact,
        profiles.is_deletion_requested,
        -- the golden record keeps only well-formed, non-placeholder e-mails
        profiles.email is not null as has_valid_email,
        profiles.email is not null
            and profiles.is_email_opted_in
            and not profiles.is_do_not_contact as is_email_contactable,

        -- orders
        coalesce(order_history.order_count, 0) as order_count,
        coalesce(order_history.cancelled_order_count, 0) as cancelled_order_count,
        coalesce(order_history.total_revenue, 0) as total_revenue,
        coalesce(order_history.total_gross_margin, 0) as total_gross_margin,
        case
            when order_history.order_count > 0
                then round(order_history.total_revenue / order_history.order_count, 2)
        end as avg_order_value,
        order_history.first_ordered_at,
        order_history.last_ordered_at,
        {{ as_of_date() }} - cast(order_history.last_ordered_at as date) as days_since_last_order,
        coalesce(order_history.order_count, 0) > 0
            and {{ as_of_date() }} - cast(order_history.last_ordered_at as date) > {{ var('dormant_days') }}
            as is_dormant,

        -- subscriptions (定期購入)
        coalesce(subscriptions.active_subscription_count, 0) as active_subscription_count,
        coalesce(subscriptions.has_active_subscription, false) as has_active_subscription,
        subscriptions.subscription_tenure_days,
        coalesce(subscriptions.cancelled_subscription_count, 0) as cancelled_subscription_count,

        -- returns
        coalesce(returns.return_count, 0) as return_count,
        coalesce(returns.refunded_amount, 0) as refunded_amount,

        -- support
        coalesce(support.support_ticket_count, 0) as support_ticket_count,
        coalesce(support.open_support_ticket_count, 0) as open_support_ticket_count,
        support.avg_csat_score,
        support.last_inquiry_at,

        -- web
        coalesce(web.web_session_count, 0) as web_session_count,
        web.last_web_visit_at,
        web.top_viewed_categories,

        -- e-mail (has_unsubscribed is with consent above)
        coalesce(email.email_send_count, 0) as email_send_count,
        email.email_open_rate,
        email.email_click_rate,
        coalesce(email.has_hard_bounced, false) as has_hard_bounced,

        -- social
        coalesce(social.social_mention_count, 0) as social_mention_count,
        social.avg_sentiment_score,
        coalesce(social.referred_customer_count, 0) as referred_customer_count,
        coalesce(social.referred_customer_revenue, 0) as referred_customer_revenue,

        {{ as_of_date() }} as as_of_date,
    from profiles
    left join order_history
        on profiles.customer_id = order_history.customer_id
    left join subscriptions
        on profiles.customer_id = subscriptions.customer_id
    left join returns
        on profiles.customer_id = returns.customer_id
    left join support
        on profiles.customer_id = support.customer_id
    left join web
        on profiles.customer_id = web.customer_id
    left join email
        on profiles.customer_id = email.customer_id
    left join social
        on profiles.customer_id = social.customer_id
)

select * from final
