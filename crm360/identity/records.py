"""Every source record that can name a person, with its identifiers, from the staging views.

A record is one CRM contact, one shop account, one helpdesk ticket, one web device (anonymous
id) or one social handle. Identifiers are the values that link records deterministically:
`crm_id`, `shop_id` (a web device gets one from each login), `email`, `phone`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

SOURCE_RANK = {"crm": 1, "shop": 2, "support": 3, "social": 4, "web": 5}

_NO_SPACE = r"regexp_replace({0}, '[\s\x{{3000}}]', '', 'g')"

RECORDS_SQL = f"""
create or replace temp table id_records_unnumbered as
    select 'crm' as source, contact_id as source_key,
        nullif({_NO_SPACE.format("coalesce(last_name, '') || coalesce(first_name, '')")}, '')
            as name,
        nullif({_NO_SPACE.format("coalesce(last_name_kana, '') || coalesce(first_name_kana, '')")},
            '') as name_kana,
        birth_date, postal_code, prefecture, phone_e164 as phone, email, created_at,
    from staging.stg_crm__contacts
    union all
    select 'shop', cast(shop_customer_id as varchar),
        {_NO_SPACE.format("full_name")}, {_NO_SPACE.format("full_name_kana")},
        birth_date, postal_code, prefecture, phone_e164, email, created_at,
    from staging.stg_shop__customers
    union all
    select 'support', ticket_id, null, null, null, null, null, null, email, created_at,
    from staging.stg_support__tickets
    union all
    select 'social', handle, null, null, null, null, null, null, null, min(posted_at),
    from staging.stg_social__mentions
    where handle is not null
    group by handle
    union all
    select 'web', anonymous_id, null, null, null, null, null, null, null, min(occurred_at),
    from staging.stg_web__events
    where anonymous_id is not null
    group by anonymous_id
"""

# A record's index (idx) is its position in source rank, then source key, order. Numbered within
# each source and offset by the sources ranked before it: the same numbers as one row_number()
# over all the records, but each sort holds one source's keys only, not every wide record
# (4.7M records at a million people: 3.0 s -> 1.7 s).
NUMBERING_SQL = f"""
create or replace temp table id_records as
with positions as (
    select rowid as row,
        row_number() over (partition by source order by source_key) - 1 as position,
    from id_records_unnumbered
),
offsets as (
    select source,
        cast(coalesce(sum(count(*)) over (
            order by case source {
    " ".join(f"when '{s}' then {r}" for s, r in SOURCE_RANK.items())
} end rows between unbounded preceding and 1 preceding
        ), 0) as bigint) as first_idx,
    from id_records_unnumbered
    group by source
)
select
    positions.position + offsets.first_idx as idx,
    source || ':' || source_key as record_id,
    records.*,
from id_records_unnumbered as records
inner join positions on positions.row = records.rowid
inner join offsets using (source)
"""

IDENTIFIERS_SQL = """
create or replace temp table id_identifiers as
with raw_identifiers as (
    select source || ':' || source_key as record_id, 'crm_id' as id_type, source_key as id_value
    from id_records where source = 'crm'
    union all
    select 'shop:' || shop_customer_id, 'crm_id', contact_id
    from staging.stg_shop__customers where contact_id is not null
    union all
    select source || ':' || source_key, 'shop_id', source_key from id_records where source = 'shop'
    union all
    select 'support:' || ticket_id, 'shop_id', cast(shop_customer_id as varchar)
    from staging.stg_support__tickets where shop_customer_id is not null
    union all
    select distinct 'web:' || anonymous_id, 'shop_id', cast(shop_customer_id as varchar)
    from staging.stg_web__events
    where anonymous_id is not null and shop_customer_id is not null
    union all
    select record_id, 'email', email from id_records where email is not null
    union all
    select distinct 'social:' || handle, 'email', email
    from staging.stg_social__mentions where handle is not null and email is not null
    union all
    select record_id, 'phone', phone from id_records where phone is not null
)
select distinct id_records.idx, id_records.source, raw_identifiers.*,
from raw_identifiers
inner join id_records using (record_id)
"""


def load_records(con: duckdb.DuckDBPyConnection) -> int:
    """Build the temp tables id_records and id_identifiers; return the number of records."""
    con.execute(RECORDS_SQL)
    con.execute(NUMBERING_SQL)
    con.execute("drop table id_records_unnumbered")
    con.execute(IDENTIFIERS_SQL)
    return con.execute("select count(*) from id_records").fetchone()[0]
