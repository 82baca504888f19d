-- One row per campaign × RFM segment of its audience, plus one total row per campaign
-- (rfm_segment = 'All', is_campaign_total): reach and engagement, conversions within the
-- attribution window for the treated and the control group, last-touch revenue and margin,
-- cost and ROI, and the uplift over the control group with its confidence interval.
-- The segment is the customer's RFM segment at the start of the send month
-- (customer_monthly_history), so segment rows describe the audience as it was when sent.
{%- set confidence_level = var('uplift_confidence_level') | float %}
{%- if not (0 < confidence_level < 1) %}
    {{ exceptions.raise_compiler_error(
        "uplift_confidence_level must lie strictly between 0 and 1, got " ~ confidence_level) }}
{%- endif %}
with

outcomes as (
    select * from {{ ref('int_campaign__recipient_outcomes') }}
),

campaigns as (
    select * from {{ ref('stg_email__campaigns') }}
    where sent_at < {{ as_of_date() }}
),

history as (
    select * from {{ ref('customer_monthly_history') }}
),

critical_value as (
    -- two-sided: the (1 + level) / 2 quantile of the standard normal
    select {{ normal_quantile('(1 + ' ~ confidence_level ~ ') / 2') }} as z,
),

segmented as (
    select
        outcomes.*,
        case
            -- sent before the first month the history covers (var history_months)
            when date_trunc('month', campaigns.sent_at)
                < cast(date_trunc('month', {{ as_of_date() }})
                    - to_months({{ var('history_months') }} - 1) as date)
                then 'Before history'
            -- no completed order in the RFM window at the start of the send month
            when history.rfm_segment is null then 'No purchase'
            else history.rfm_segment
        end as rfm_segment,
    from outcomes
    inner join campaigns
        on outcomes.campaign_id = campaigns.campaign_id
    left join history
        on outcomes.customer_id = history.customer_id
        and history.as_of_date = cast(date_trunc('month', campaigns.sent_at) as date)
),

aggregated as (
    select
        campaign_id,
        grouping(rfm_segment) = 1 as is_campaign_total,
        case when grouping(rfm_segment) = 1 then 'All' else rfm_segment end as rfm_segment,
        count(*) as audience_count,
        count(*) filter (where is_treated) as treated_count,
        count(*) filter (where is_control) as control_count,
        count(*) filter (where is_delivered) as delivered_count,
        count(*) filter (where is_opened) as unique_open_count,
        count(*) filter (where is_clicked) as unique_click_count,
        count(*) filter (where has_unsubscribed) as unsubscribe_count,
        count(*) filter (where is_treated and has_converted) as treated_conversion_count,
        coalesce(sum(window_revenue) filter (where is_treated), 0) as treated_window_revenue,
        coalesce(sum(window_gross_margin) filter (where is_treated), 0)
            as treated_window_gross_margin,
        count(*) filter (where is_control and has_converted) as control_conversion_count,
        coalesce(sum(window_revenue) filter (where is_control), 0) as control_window_revenue,
        coalesce(sum(window_gross_margin) filter (where is_control), 0)
            as control_window_gross_margin,
        sum(attributed_order_count) as attributed_order_count,
        sum(attributed_revenue) as attributed_revenue,
        sum(attributed_gross_margin) as attributed_gross_margin,
    from segmented
    group by grouping sets ((campaign_id, rfm_segment), (campaign_id))
),

-- a campaign sent before as_of_date with no audience at all still gets its total row
campaign_rows as (
    select
        campaigns.campaign_id,
        campaigns.campaign_name,
        campaigns.campaign_channel,
        campaigns.campaign_objective,
        campaigns.sent_at,
        campaigns.has_control_group,
        campaigns.campaign_cost as campaign_total_cost,
        coalesce(aggregated.is_campaign_total, true) as is_campaign_total,
        coalesce(aggregated.rfm_segment, 'All') as rfm_segment,
        coalesce(aggregated.audience_count, 0) as audience_count,
        coalesce(aggregated.treated_count, 0) as treated_count,
        coalesce(aggregated.control_count, 0) as control_count,
        coalesce(aggregated.delivered_count, 0) as delivered_count,
        coalesce(aggregated.unique_open_count, 0) as unique_open_count,
        coalesce(aggregated.unique_click_count, 0) as unique_click_count,
        coalesce(aggregated.unsubscribe_count, 0) as unsubscribe_count,
        coalesce(aggregated.treated_conversion_count, 0) as treated_conversion_count,
        coalesce(aggregated.treated_window_revenue, 0) as treated_window_revenue,
        coalesce(aggregated.treated_window_gross_margin, 0) as treated_window_gross_margin,
        coalesce(aggregated.control_conversion_count, 0) as control_conversion_count,
        coalesce(aggregated.control_window_revenue, 0) as control_window_revenue,
        coalesce(aggregated.control_window_gross_margin, 0) as control_window_gross_margin,
        coalesce(aggregated.attributed_order_count, 0) as attributed_order_count,
        coalesce(aggregated.attributed_revenue, 0) as attributed_revenue,
        coalesce(aggregated.attributed_gross_margin, 0) as attributed_gross_margin,
    from campaigns
    left join aggregated
        on campaigns.campaign_id = aggregated.campaign_id
),

rates as (
    select
        *,
        -- the campaign's cost, shared among its segments by their share of the sends
        case
            when is_campaign_total then campaign_total_cost
            when sum(treated_count) filter (where not is_campaign_total)
                over (partition by campaign_id) > 0
                then campaign_total_cost * treated_count
                    / sum(treated_count) filter (where not is_campaign_total)
                        over (partition by campaign_id)
            else 0
        end as campaign_cost,
        case when treated_count > 0
            then treated_conversion_count / treated_count end as treated_conversion_rate,
        -- no control group (or nobody of this segment in it): no comparison
        case when has_control_group and control_count > 0
            then control_conversion_count / control_count end as control_conversion_rate,
    from campaign_rows
),

wilson as (
    -- Wilson score interval of each conversion rate (it stays inside [0, 1] and keeps a
    -- width at 0 % or 100 %, where the Wald interval collapses to a point)
    select
        rates.*,
        critical_value.z,
        {{ wilson_bound('treated_conversion_rate', 'treated_count', 'z', -1) }} as treated_rate_lower,
        {{ wilson_bound('treated_conversion_rate', 'treated_count', 'z', 1) }} as treated_rate_upper,
        {{ wilson_bound('control_conversion_rate', 'control_count', 'z', -1) }} as control_rate_lower,
        {{ wilson_bound('control_conversion_rate', 'control_count', 'z', 1) }} as control_rate_upper,
    from rates
    cross join critical_value
),

uplift as (
    select
        wilson.*,
        wilson.treated_conversion_rate - wilson.control_conversion_rate as uplift,
        -- Newcombe's hybrid score interval for a difference of two independent proportions
        -- (Newcombe 1998, method 10), from the two Wilson intervals
        wilson.treated_conversion_rate - wilson.control_conversion_rate - sqrt(
            pow(wilson.treated_conversion_rate - wilson.treated_rate_lower, 2)
            + pow(wilson.control_rate_upper - wilson.control_conversion_rate, 2)
        ) as uplift_lower_bound,
        wilson.treated_conversion_rate - wilson.control_conversion_rate + sqrt(
            pow(wilson.treated_rate_upper - wilson.treated_conversion_rate, 2)
            + pow(wilson.control_conversion_rate - wilson.control_rate_lower, 2)
        ) as uplift_upper_bound,
        -- revenue and margin per treated customer above those per control customer
        case when wilson.treated_conversion_rate is not null
            and wilson.control_conversion_rate is not null
            then wilson.treated_window_revenue / wilson.treated_count
                - wilson.control_window_revenue / wilson.control_count
        end as uplift_revenue_per_customer,
        case when wilson.treated_conversion_rate is not null
            and wilson.control_conversion_rate is not null
            then wilson.treated_window_gross_margin / wilson.treated_count
                - wilson.control_window_gross_margin / wilson.control_count
        end as uplift_gross_margin_per_customer,
    from wilson
),

final as (
    select
        -- campaign and segment
        campaign_id,
        campaign_name,
        campaign_channel,
        campaign_objective,
        sent_at,
        has_control_group,
        rfm_segment,
        is_campaign_total,
        sent_at + to_days({{ var('attribution_window_days') }}) < {{ as_of_date() }}
            as is_window_complete,

        -- reach and engagement
        audience_count,
        treated_count,
        control_count,
        delivered_count,
        unique_open_count,
        unique_click_count,
        unsubscribe_count,
        case when delivered_count > 0
            then round(unique_open_count / delivered_count, 4) end as open_rate,
        case when delivered_count > 0
            then round(unique_click_count / delivered_count, 4) end as click_rate,

        -- conversions in the attribution window (any completed order, treated and control alike)
        treated_conversion_count,
        round(treated_conversion_rate, 4) as treated_conversion_rate,
        treated_window_revenue,
        treated_window_gross_margin,
        control_conversion_count,
        round(control_conversion_rate, 4) as control_conversion_rate,

        -- last-touch attribution (each order credited to at most one campaign)
        attributed_order_count,
        attributed_revenue,
        attributed_gross_margin,
        round(campaign_cost, 2) as campaign_cost,
        case when campaign_cost > 0
            then round((attributed_gross_margin - campaign_cost) / campaign_cost, 4) end as roi,

        -- uplift over the control group
        round(uplift, 4) as uplift,
        round(uplift_lower_bound, 4) as uplift_ci_lower,
        round(uplift_upper_bound, 4) as uplift_ci_upper,
        {{ confidence_level }} as uplift_confidence_level,
        round(uplift * treated_count, 2) as incremental_conversions,
        round(uplift_revenue_per_customer * treated_count, 2) as incremental_revenue,
        round(uplift_gross_margin_per_customer * treated_count, 2) as incremental_gross_margin,
        case when campaign_cost > 0
            then round(
                (uplift_gross_margin_per_customer * treated_count - campaign_cost) / campaign_cost,
                4
            )
        end as incremental_roi,

        {{ as_of_date() }} as as_of_date,
    from uplift
)

select * from final
