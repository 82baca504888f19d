-- One row per customer of customer_360: everything an audience definition may select on
-- (activation/audiences/*.yml), and the consent and contact facts every export is suppressed
-- by. Audience predicates are checked against the columns documented for this model.
with

customers as (
    select * from {{ ref('customer_360') }}
),

rfm as (
    select * from {{ ref('customer_rfm') }}
),

lifecycle as (
    select * from {{ ref('customer_lifecycle') }}
),

ltv as (
    select * from {{ ref('customer_ltv') }}
),

churn as (
    select * from {{ ref('customer_churn_risk') }}
),

value_tiers as (
    select * from {{ ref('customer_value_tiers') }}
),

pressure as (
    select * from {{ ref('customer_contact_pressure') }}
),

best_time as (
    select * from {{ ref('customer_best_channel_time') }}
),

final as (
    select
        -- who
        customers.customer_id,
        customers.email,
        customers.phone_e164,
        customers.full_name,
        customers.full_name_kana,
        customers.postal_code,
        customers.prefecture,
        customers.birth_date,
        customers.is_business,
        customers.industry,
        customers.acquisition_channel,

        -- consent and deliverability (suppression)
        customers.is_email_opted_in,
        customers.has_unsubscribed,
        customers.is_do_not_contact,
        customers.is_deletion_requested,
        customers.has_hard_bounced,
        customers.has_valid_email,
        customers.is_email_contactable,

        -- orders and value
        customers.order_count,
        customers.total_revenue,
        customers.total_gross_margin,
        customers.first_ordered_at,
        customers.last_ordered_at,
        customers.days_since_last_order,
        customers.is_dormant,
        customers.has_active_subscription,
        customers.subscription_tenure_days,
        coalesce(rfm.rfm_segment, 'No purchase') as rfm_segment,
        rfm.r_score,
        rfm.f_score,
        rfm.m_score,
        coalesce(lifecycle.lifecycle_stage, 'prospect') as lifecycle_stage,
        value_tiers.revenue_decile,
        coalesce(value_tiers.is_top_tier, false) as is_top_tier,
        ltv.probability_alive,
        ltv.predicted_revenue_ltv,
        ltv.predicted_gross_margin_ltv,
        churn.churn_probability,
        churn.churn_band,
        churn.churn_model,

        -- engagement and contact pressure
        customers.email_open_rate,
        customers.email_click_rate,
        customers.web_session_count,
        customers.support_ticket_count,
        customers.referred_customer_count,
        coalesce(pressure.send_count_7d, 0) as send_count_7d,
        coalesce(pressure.send_count_30d, 0) as send_count_30d,
        pressure.last_contacted_at,
        best_time.preferred_channel,
        best_time.best_send_hour,
        best_time.best_send_weekday,

        customers.as_of_date,
    from customers
    left join rfm
        on customers.customer_id = rfm.customer_id
    left join lifecycle
        on customers.customer_id = lifecycle.customer_id
    left join ltv
        on customers.customer_id = ltv.customer_id
    left join churn
        on customers.customer_id = churn.customer_id
    left join value_tiers
        on customers.customer_id = value_tiers.customer_id
    left join pressure
        on customers.customer_id = pressure.customer_id
    left join best_time
        on customers.customer_id = best_time.customer_id
)

select * from final
