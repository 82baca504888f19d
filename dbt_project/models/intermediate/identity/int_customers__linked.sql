-- Every linked source record with its customer id: the identity graph written by the
-- identity-resolution step (deterministic rules, Splink matches, over-merge guards, stable ids).
with

graph as (
    select * from {{ source('identity', 'identity_graph') }}
),

final as (
    select
        customer_id,
        source,
        source_key,
        record_id,
        link_rule,
        linked_to_record_id,
        match_probability,
    from graph
)

select * from final
