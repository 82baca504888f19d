{#-
    SCD type 2 history of the customer's key attributes, one version per change, dated by the
    run's as-of date (not the wall clock), so "what did this customer look like on D" is:
        select * from snapshots.customer_360_history
        where customer_id = ? and dbt_valid_from <= D and (dbt_valid_to > D or dbt_valid_to is null)
    A customer id that disappears (merged into another) has its last version closed.
-#}
{% snapshot customer_360_history %}

{{
    config(
        schema='snapshots',
        unique_key='customer_id',
        strategy='check',
        check_cols=[
            'full_name', 'email', 'phone_e164', 'postal_code', 'prefecture',
            'is_email_opted_in', 'is_do_not_contact', 'is_deletion_requested',
        ],
        updated_at='valid_as_of',
        hard_deletes='invalidate',
    )
}}

select
    customer_id,
    contact_id,
    full_name,
    email,
    phone_e164,
    postal_code,
    prefecture,
    is_email_opted_in,
    is_do_not_contact,
    is_deletion_requested,
    cast(as_of_date as timestamp) as valid_as_of,
from {{ ref('customer_360') }}

{% endsnapshot %}
