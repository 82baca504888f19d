-- One row per customer with a helpdesk ticket opened before as_of_date: tickets, the ones
-- still open on as_of_date, satisfaction (CSAT) and the last inquiry.
with

identity as (
    select * from {{ ref('int_customers__linked') }}
),

tickets as (
    select * from {{ ref('stg_support__tickets') }}
    where created_at < {{ as_of_date() }}
),

ticket_states as (
    select
        identity.customer_id,
        tickets.ticket_id,
        tickets.created_at,
        -- staging keeps the current status: a ticket resolved on or after as_of_date was open then
        tickets.is_open or tickets.resolved_at >= {{ as_of_date() }} as is_open_as_of,
        -- the rating comes after the resolution: unknown on as_of_date if resolved later
        case when tickets.resolved_at < {{ as_of_date() }} then tickets.csat_score end as csat_score,
    from tickets
    inner join identity
        on identity.source = 'support'
        and identity.source_key = tickets.ticket_id
),

final as (
    select
        customer_id,
        count(*) as support_ticket_count,
        count(*) filter (where is_open_as_of) as open_support_ticket_count,
        count(csat_score) as csat_response_count,
        round(avg(csat_score), 2) as avg_csat_score,
        max(created_at) as last_inquiry_at,
    from ticket_states
    group by 1
)

select * from final
