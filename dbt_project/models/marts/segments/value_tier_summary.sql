-- One row per revenue decile (1 = the top tenth of buyers by lifetime revenue, always ten
-- rows): customers, revenue and gross margin of the decile, their shares of all buyers' and the
-- cumulative shares from the top; every row repeats the headline: the share of revenue from
-- the top tier (deciles 1 and 2, the top 20%).
with

tiers as (
    select * from {{ ref('customer_value_tiers') }}
),

deciles as (
    select cast(decile as integer) as revenue_decile,
    from range(1, 11) as deciles(decile)
),

per_decile as (
    select
        revenue_decile,
        count(*) as customers,
        sum(revenue) as revenue,
        sum(gross_margin) as gross_margin,
    from tiers
    group by 1
),

totals as (
    select
        count(*) as buyer_count,
        sum(revenue) as buyers_revenue,
        sum(gross_margin) as buyers_margin,
        count(*) filter (where is_top_tier) as top_tier_customers,
        coalesce(sum(revenue) filter (where is_top_tier), 0) as top_tier_revenue,
    from tiers
),

decile_totals as (
    select
        deciles.revenue_decile,
        coalesce(per_decile.customers, 0) as customers,
        coalesce(per_decile.revenue, 0) as revenue,
        coalesce(per_decile.gross_margin, 0) as gross_margin,
    from deciles
    left join per_decile
        on deciles.revenue_decile = per_decile.revenue_decile
),

cumulative as (
    select
        *,
        sum(customers) over from_top as cumulative_customers,
        sum(revenue) over from_top as cumulative_revenue,
        sum(gross_margin) over from_top as cumulative_margin,
    from decile_totals
    window from_top as (order by revenue_decile)
),

final as (
    select
        cumulative.revenue_decile,
        cumulative.customers,
        cumulative.revenue,
        cumulative.gross_margin,
        round(cumulative.customers / nullif(totals.buyer_count, 0), 6) as customer_share,
        round(cumulative.revenue / nullif(totals.buyers_revenue, 0), 6) as revenue_share,
        round(cumulative.gross_margin / nullif(totals.buyers_margin, 0), 6) as margin_share,
        round(cumulative.cumulative_customers / nullif(totals.buyer_count, 0), 6)
            as cumulative_customer_share,
        round(cumulative.cumulative_revenue / nullif(totals.buyers_revenue, 0), 6)
            as cumulative_revenue_share,
        round(cumulative.cumulative_margin / nullif(totals.buyers_margin, 0), 6)
            as cumulative_margin_share,
        totals.top_tier_customers,
        round(totals.top_tier_customers / nullif(totals.buyer_count, 0), 6)
            as top_tier_customer_share,
        round(totals.top_tier_revenue / nullif(totals.buyers_revenue, 0), 6)
            as top_tier_revenue_share,
        {{ as_of_date() }} as as_of_date,
    from cumulative
    cross join totals
)

select * from final
