{#- What customer_monthly_history keeps beside itself so that a run rewrites only the customers
    whose rows can have changed: a table `customer_monthly_history__inputs`, in the schema of
    the intermediate models (not a mart: analysts and reports list the marts), with one row per
    customer of the orders it was built from (a fingerprint of them) and the build key of that
    build. It is written by the model's post-hook, in the model's transaction, so it always
    describes the history table as committed.

    A run rebuilds every row when the key differs: another month (the months reported move),
    another `history_months`, `rfm_window_days`, `lifecycle` or `lifecycle_recent_order_days`,
    another segment map, or another version of the model or of the macros it computes with. -#}

{#- The orders a history built on `as_of_date` reads: completed, with a customer, placed before
    the first day of as_of_date's month (the last reported month's as-of date). -#}
{% macro monthly_history_orders() -%}
    select * from {{ ref('int_orders__priced') }}
    where is_completed
        and customer_id is not null
        and ordered_at < date_trunc('month', {{ as_of_date() }})
{%- endmacro %}


{#- One row per customer of `orders`: how many orders and a sum of a hash of each order's time
    and revenue (what the history is computed from). A customer whose orders changed in any way
    the history can see (an order added, cancelled, moved to another customer by an identity
    merge or split, re-timed or re-priced) gets another fingerprint. -#}
{% macro monthly_history_fingerprints(orders) -%}
    select
        customer_id,
        count(*) as order_count,
        sum(hash(ordered_at, revenue)::hugeint) as orders_hash,
    from {{ orders }}
    group by customer_id
{%- endmacro %}


{#- A SQL expression: the build key of a history built now (see the top of this file). -#}
{% macro monthly_history_build_key() -%}
    {%- set code = [
        model.raw_code,
        monthly_history_orders.macro.macro_sql,
        monthly_history_fingerprints.macro.macro_sql,
        customer_order_state.macro.macro_sql,
        rfm_segments.macro.macro_sql,
        rfm_axes.macro.macro_sql,
        rfm_quintile.macro.macro_sql,
        value_ranks.macro.macro_sql,
        worse_values_window.macro.macro_sql,
        lifecycle_stage.macro.macro_sql,
    ] -%}
    {%- set settings = tojson({
        'history_months': var('history_months'),
        'rfm_window_days': var('rfm_window_days'),
        'lifecycle': var('lifecycle'),
        'lifecycle_recent_order_days': var('lifecycle_recent_order_days', 365),
        'code': local_md5(code | join('\n')),
    }, sort_keys=true) -%}
    md5(concat_ws(
        '|',
        cast(date_trunc('month', {{ as_of_date() }}) as varchar),
        '{{ settings }}',
        (
            select cast(coalesce(sum(hash(r_score, fm_score, rfm_segment)::hugeint), 0) as varchar)
            from {{ ref('rfm_segment_map') }}
        )
    ))
{%- endmacro %}


{% macro monthly_history_inputs_relation() -%}
    {%- set intermediate = ref('int_orders__priced') -%}
    {{ return(api.Relation.create(database=intermediate.database, schema=intermediate.schema,
                                  identifier=this.identifier ~ '__inputs')) }}
{%- endmacro %}


{#- True when this is an incremental run and the inputs table says the history was built with
    this run's key: only then may the model rewrite just the customers that changed. -#}
{% macro monthly_history_is_current() -%}
    {%- if not execute or not is_incremental() -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set inputs = load_relation(monthly_history_inputs_relation()) -%}
    {%- if inputs is none -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set result = run_query(
        "select coalesce(bool_and(build_key = " ~ monthly_history_build_key() ~ "), false) "
        ~ "from " ~ inputs) -%}
    {{ return(result.columns[0].values()[0]) }}
{%- endmacro %}


{#- The post-hook: keep this build's inputs, then drop the rows of customers left with no order
    (an identity merge folds one customer into another; the rewritten customers' rows were
    replaced by the incremental insert, these have no new rows to replace them). -#}
{% macro monthly_history_save_inputs() -%}
    create or replace table {{ monthly_history_inputs_relation() }} as
    with orders as ({{ monthly_history_orders() }})
    select
        fingerprints.*,
        {{ monthly_history_build_key() }} as build_key,
    from ({{ monthly_history_fingerprints('orders') }}) as fingerprints;

    delete from {{ this }}
    where customer_id not in (select customer_id from {{ monthly_history_inputs_relation() }})
{%- endmacro %}
