-- One row per customer with a return before as_of_date: returns and the amount refunded.
with

returns as (
    select * from {{ ref('stg_shop__returns') }}
    where returned_at < {{ as_of_date() }}
),

orders as (
    select * from {{ ref('int_orders__priced') }}
),

final as (
    select
        orders.customer_id,
        count(*) as return_count,
        coalesce(sum(returns.refund_amount), 0) as refunded_amount,
        max(returns.returned_at) as last_returned_at,
    from returns
    inner join orders
        on returns.order_id = orders.order_id
    group by 1
)

select * from final
