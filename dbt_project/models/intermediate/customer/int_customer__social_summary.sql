-- One row per customer with social mentions or referrals before as_of_date: mentions and their
-- mean sentiment, the customers they referred (found by any e-mail the identity graph holds
-- for them) and those customers' revenue.
with

identity as (
    select * from {{ ref('int_customers__linked') }}
),

mentions as (
    select * from {{ ref('stg_social__mentions') }}
    where posted_at < {{ as_of_date() }}
),

referrals as (
    select * from {{ ref('stg_social__referrals') }}
    where referred_at < {{ as_of_date() }}
),

customer_identifiers as (
    select * from {{ source('identity', 'customer_identifiers') }}
),

orders as (
    select * from {{ ref('int_orders__priced') }}
    where ordered_at < {{ as_of_date() }}
        and is_completed
),

mention_stats as (
    select
        identity.customer_id,
        count(*) as social_mention_count,
        round(avg(mentions.sentiment_score), 2) as avg_sentiment_score,
        max(mentions.posted_at) as last_mentioned_at,
    from mentions
    inner join identity
        on identity.source = 'social'
        and identity.source_key = mentions.handle
    group by 1
),

-- an address shared by several customers (a placeholder, a family) identifies no one
email_owners as (
    select
        id_value as email,
        min(customer_id) as customer_id,
    from customer_identifiers
    where id_type = 'email'
    group by 1
    having count(distinct customer_id) = 1
),

customer_revenue as (
    select
        customer_id,
        sum(revenue) as revenue,
    from orders
    group by 1
),

referred_customers as (
    select distinct
        referrer.customer_id,
        email_owners.customer_id as referred_customer_id,
    from referrals
    inner join identity as referrer
        on referrer.source = 'crm'
        and referrer.source_key = referrals.referrer_contact_id
    inner join email_owners
        on referrals.referred_email = email_owners.email
    -- referring oneself earns nothing
    where email_owners.customer_id != referrer.customer_id
),

referral_stats as (
    select
        referred_customers.customer_id,
        count(*) as referred_customer_count,
        coalesce(sum(customer_revenue.revenue), 0) as referred_customer_revenue,
    from referred_customers
    left join customer_revenue
        on referred_customers.referred_customer_id = customer_revenue.customer_id
    group by 1
),

final as (
    select
        coalesce(mention_stats.customer_id, referral_stats.customer_id) as customer_id,
        coalesce(mention_stats.social_mention_count, 0) as social_mention_count,
        mention_stats.avg_sentiment_score,
        mention_stats.last_mentioned_at,
        coalesce(referral_stats.referred_customer_count, 0) as referred_customer_count,
        coalesce(referral_stats.referred_customer_revenue, 0) as referred_customer_revenue,
    from mention_stats
    full outer join referral_stats
        on mention_stats.customer_id = referral_stats.customer_id
)

select * from final
