-- One row per customer with a return before as_of_date: returns and the amount refunded.
with

identity as (
    select * from {{ ref('int_customers__linked') }}
),

returns as (
    select * from {{ ref('stg_shop__returns') }}
    where returned_at < {{ as_of_date() }}
),

orders as (
    select * from {{ ref('int_orders__priced') }}
),

final as (
    select
        identity.customer_id,
        count(*) as return_count,
        coalesce(sum(returns.refund_amount), 0) as refunded_amount,
        max(returns.returned_at) as last_returned_at,
    from returns
    inner join orders
        on returns.order_id = orders.order_id
    inner join identity
        on identity.source = 'shop'
        and identity.source_key = cast(orders.shop_customer_id as varchar)
    group by 1
)

select * from final
