"""Identity resolution: one customer id per person across every source.

`resolve(con, as_of, run_id, config)` reads the staging views, links records deterministically
(shared identifiers, strongest first) and probabilistically (Splink), clusters them under the
configured over-merge guards, keeps customer ids stable against the previous run, and writes
the `identity` schema:

- `identity.identity_graph`: every linked source record -> customer id, with the rule (or match
  probability) that linked it
- `identity.customer_identifiers`: every identifier value -> customer id
- `identity.unlinkable_records`: records with no usable identifier, with the reason
- `identity.blocked_identifiers`: identifier values that link no one, with the reason
- `identity.rejected_links`: links refused because they would over-merge, with the reason
- `identity.match_pairs`: the probabilistic matches at or above the threshold
- `identity.customers`: every customer id ever issued (active, merged into another, retired)
- `identity.id_changes`: the log of merges and splits (old id -> new id, when, why)
- `identity.resolution_runs`: one row per run with the counts and timings
"""

from __future__ import annotations

import json
import logging
import time
from datetime import date
from typing import TYPE_CHECKING

from crm360.identity.config import IdentityConfig, load_config
from crm360.identity.graph import Link, build_clusters
from crm360.identity.ids import assign_ids
from crm360.identity.records import load_records

if TYPE_CHECKING:
    import duckdb

__all__ = ["IdentityConfig", "load_config", "resolve"]

log = logging.getLogger(__name__)

_DDL = """
create schema if not exists identity;
create table if not exists identity.customers (
    customer_id varchar primary key, anchor_record_id varchar, status varchar,
    merged_into varchar, first_as_of_date date, last_as_of_date date, issued_at timestamp
);
create table if not exists identity.id_changes (
    old_customer_id varchar, new_customer_id varchar, change_type varchar, reason varchar,
    as_of_date date, run_id varchar, changed_at timestamp
);
create table if not exists identity.identity_graph (
    record_id varchar, source varchar, source_key varchar, customer_id varchar,
    link_rule varchar, linked_to_record_id varchar, match_probability double, as_of_date date
);
create table if not exists identity.resolution_runs (
    run_id varchar, as_of_date date, resolved_at timestamp, records bigint, customers bigint,
    linked_records bigint, unlinkable_records bigint, blocked_values bigint,
    rejected_links bigint, probabilistic_pairs bigint, probabilistic_links bigint,
    pairs_compared bigint, merges bigint, splits bigint, new_customers bigint,
    seconds double, matching_seconds double, model json
);
"""

_UNLINKABLE_REASON = {
    "web": "anonymous web device that never logged in",
    "social": "social handle with no e-mail",
    "support": "ticket with no usable e-mail or shop account",
}


def _blocked(con: duckdb.DuckDBPyConnection, config: IdentityConfig) -> list[tuple]:
    """(id_type, id_value, reason) of every identifier value that must link no one."""
    rows = []
    for id_type, id_value in con.execute(
        "select distinct id_type, id_value from id_identifiers where id_type in ('email', 'phone')"
    ).fetchall():
        reason = config.blocked_reason(id_type, id_value.lower())
        if reason:
            rows.append((id_type, id_value, reason))
    for id_type, limit in config.max_contacts_per_value.items():
        rows += con.execute(
            """
            select id_type, id_value,
                'shared by ' || count(*) || ' CRM contacts (limit ' || ? || ')',
            from id_identifiers
            where source = 'crm' and id_type = ?
            group by 1, 2
            having count(*) > ?
            """,
            [limit, id_type, limit],
        ).fetchall()
    first_reason: dict[tuple, tuple] = {}
    for row in rows:
        first_reason.setdefault(row[:2], row)
    return list(first_reason.values())


def _deterministic_links(
    con: duckdb.DuckDBPyConnection, config: IdentityConfig
) -> tuple[list[Link], list[tuple[Link, str]]]:
    """Each record sharing a usable identifier value is linked to the value's first record
    (highest-ranked source); links come out in identifier priority order. For the identifier
    types in `confirm_with_name` (a phone is often a household's), two records that both carry
    a name must also carry similar names, else the link is refused."""
    order = " ".join(f"when '{t}' then {i}" for i, t in enumerate(config.identifier_priority))
    rows = con.execute(
        f"""
        with usable as (
            select * from id_usable
        ),
        hubs as (
            select id_type, id_value, min(idx) as hub,
            from usable
            group by all
            having count(*) > 1
        )
        select hubs.hub, usable.idx,
            case when usable.source = 'web' then 'web_login' else usable.id_type end,
            not list_contains(?, usable.id_type)
                or hub_record.name_kana is null or member.name_kana is null
                or jaro_winkler_similarity(hub_record.name_kana, member.name_kana) >= ?
                or jaro_winkler_similarity(hub_record.name, member.name) >= ? as names_agree,
        from usable
        inner join hubs using (id_type, id_value)
        inner join id_records as hub_record on hub_record.idx = hubs.hub
        inner join id_records as member on member.idx = usable.idx
        where usable.idx <> hubs.hub
        order by case usable.id_type {order} end, hubs.hub, usable.idx
        """,
        [list(config.confirm_with_name), config.name_similarity, config.name_similarity],
    ).fetchall()
    links, refused = [], []
    for a, b, rule, names_agree in rows:
        if names_agree:
            links.append(Link(a, b, rule))
        else:
            refused.append((Link(a, b, rule), f"{rule} shared by records with different names"))
    return links, refused


def _probabilistic_links(con, config: IdentityConfig, index: dict[str, int]):
    from crm360.identity.matching import match_records

    records = con.execute(
        """
        select record_id, name, name_kana, cast(birth_date as varchar) as birth_date,
            postal_code, prefecture,
            case when (id_records.phone) in (select id_value from id_blocked
                 where id_type = 'phone') then null else phone end as phone,
            case when lower(id_records.email) in (select lower(id_value) from id_blocked
                 where id_type = 'email') then null else email end as email,
        from id_records
        where source in ('crm', 'shop')
        """
    ).to_arrow_table()
    if records.num_rows < config.probabilistic.min_records:
        log.warning(
            "probabilistic matching skipped: %d CRM/shop records, fewer than min_records %d",
            records.num_rows, config.probabilistic.min_records,
        )  # fmt: skip
        return [], None
    result = match_records(records, config.probabilistic)
    pairs = result.pairs.to_pylist()
    links = [
        Link(index[p["record_id_l"]], index[p["record_id_r"]], "probabilistic",
             p["match_probability"])
        for p in pairs
    ]  # fmt: skip
    return links, result


def _limited_values(con, config: IdentityConfig) -> dict[int, dict[str, set[str]]]:
    values: dict[int, dict[str, set[str]]] = {}
    types = list(config.max_per_cluster)
    if not types:
        return values
    for idx, id_type, id_value in con.execute(
        "select idx, id_type, id_value from id_usable where list_contains(?, id_type)",
        [types],
    ).fetchall():
        values.setdefault(idx, {}).setdefault(id_type, set()).add(id_value)
    return values


def resolve(
    con: duckdb.DuckDBPyConnection, as_of: date, run_id: str, config: IdentityConfig
) -> dict:
    """Resolve identities as of `as_of`; write the identity schema in one transaction."""
    started = time.monotonic()
    con.execute(_DDL)
    n = load_records(con)
    blocked = _blocked(con, config)
    con.execute("create or replace temp table id_blocked (id_type varchar, id_value varchar, "
                "reason varchar)")  # fmt: skip
    if blocked:
        con.executemany("insert into id_blocked values (?, ?, ?)", blocked)
    con.execute(
        "create or replace temp table id_usable as "
        "select * from id_identifiers anti join id_blocked using (id_type, id_value)"
    )
    record_ids = [r[0] for r in con.execute("select record_id from id_records order by idx")
                  .fetchall()]  # fmt: skip
    index = {r: i for i, r in enumerate(record_ids)}

    links, refused = _deterministic_links(con, config)
    match = None
    if config.probabilistic.enabled:
        prob_links, match = _probabilistic_links(con, config, index)
        links += prob_links
    probabilistic_ran = match is not None
    clusters = build_clusters(n, links, _limited_values(con, config), config.max_per_cluster)
    clusters.rejected[:0] = refused

    has_identifier = {r for (r,) in con.execute("select distinct idx from id_usable").fetchall()}
    members: dict[int, list[int]] = {}
    for idx, root in enumerate(clusters.root_of):
        members.setdefault(root, []).append(idx)
    customer_clusters = {
        root: m for root, m in members.items() if len(m) > 1 or m[0] in has_identifier
    }
    rules = {idx: link.rule for idx, link in clusters.first_link.items()}
    previous = dict(con.execute(
        "select record_id, customer_id from identity.identity_graph").fetchall())  # fmt: skip
    registry = "select customer_id, first_as_of_date, issued_at from identity.customers"
    first_seen = {c: (str(d), str(t)) for c, d, t in con.execute(registry).fetchall()}
    assignment = assign_ids(customer_clusters, record_ids, previous, first_seen, rules)

    summary = _write(con, as_of, run_id, record_ids, clusters, customer_clusters, assignment,
                     match, started)  # fmt: skip
    summary["probabilistic_matching"] = "ran" if probabilistic_ran else "skipped"
    log.info("identity resolution: %s", summary)
    return summary


def _write(con, as_of, run_id, record_ids, clusters, customer_clusters, assignment, match,
           started) -> dict:  # fmt: skip
    import polars as pl

    sources = con.execute("select source, source_key from id_records order by idx").fetchall()
    graph_rows = []
    for root, members in customer_clusters.items():
        customer_id = assignment.customer_of[root]
        for idx in members:
            link = clusters.first_link.get(idx)
            other = None if link is None else (link.b if link.a == idx else link.a)
            graph_rows.append((
                record_ids[idx], *sources[idx], customer_id,
                "anchor" if link is None else link.rule,
                None if other is None else record_ids[other],
                None if link is None else link.probability,
            ))  # fmt: skip
    graph = pl.DataFrame(
        graph_rows,
        schema={"record_id": pl.String, "source": pl.String, "source_key": pl.String,
                "customer_id": pl.String, "link_rule": pl.String,
                "linked_to_record_id": pl.String, "match_probability": pl.Float64},
        orient="row",
    )  # fmt: skip
    rejected = pl.DataFrame(
        [(record_ids[lk.a], record_ids[lk.b], lk.rule, lk.probability, why)
         for lk, why in clusters.rejected],
        schema={"record_id_a": pl.String, "record_id_b": pl.String, "link_rule": pl.String,
                "match_probability": pl.Float64, "reason": pl.String},
        orient="row",
    )  # fmt: skip
    pairs = match.pairs if match else None
    con.register("graph_frame", graph)
    con.register("rejected_frame", rejected)
    changes = pl.DataFrame(
        assignment.changes,
        schema={"old_customer_id": pl.String, "new_customer_id": pl.String,
                "change_type": pl.String, "reason": pl.String},
    )  # fmt: skip
    con.register("changes_frame", changes)
    new_ids = pl.DataFrame(
        list(assignment.new_ids.items()),
        schema={"customer_id": pl.String, "anchor_record_id": pl.String},
        orient="row",
    )
    con.register("new_ids_frame", new_ids)
    if pairs is not None:
        con.register("pairs_frame", pairs)
    con.execute("begin transaction")
    try:
        con.execute(
            """
            create or replace table identity.identity_graph as
            select *, cast(? as date) as as_of_date from graph_frame order by record_id
            """,
            [as_of],
        )
        con.execute(
            """
            create or replace table identity.blocked_identifiers as
            select id_records.source, id_records.source_key, id_records.record_id,
                id_type, id_value, id_blocked.reason,
            from id_identifiers
            inner join id_blocked using (id_type, id_value)
            inner join id_records using (record_id)
            order by 3, 4
            """
        )
        con.execute(
            """
            create or replace table identity.customer_identifiers as
            select graph.customer_id, ids.id_type, ids.id_value, ids.source, ids.record_id,
            from id_usable as ids
            inner join identity.identity_graph as graph using (record_id)
            order by 1, 2, 3, 5
            """
        )
        con.execute(
            f"""
            create or replace table identity.unlinkable_records as
            with blocked_only as (
                select record_id,
                    string_agg(id_type || ' ' || id_value || ' (' || reason || ')', '; '
                        order by id_type) as blocked,
                from identity.blocked_identifiers
                group by 1
            )
            select id_records.source, id_records.source_key, id_records.record_id,
                coalesce(
                    'only blocked identifiers: ' || blocked_only.blocked,
                    case id_records.source {
                " ".join(f"when '{s}' then '{r}'" for s, r in _UNLINKABLE_REASON.items())
            }
                    else 'no usable identifier' end
                ) as reason,
                cast(? as date) as as_of_date,
            from id_records
            anti join identity.identity_graph using (record_id)
            left join blocked_only using (record_id)
            order by 3
            """,
            [as_of],
        )
        con.execute(
            "create or replace table identity.rejected_links as "
            "select *, cast(? as date) as as_of_date from rejected_frame",
            [as_of],
        )
        if pairs is not None:
            con.execute(
                """
                create or replace table identity.match_pairs as
                select pairs_frame.*, graph_l.customer_id = graph_r.customer_id as is_linked,
                    cast(? as date) as as_of_date,
                from pairs_frame
                left join identity.identity_graph as graph_l
                    on graph_l.record_id = pairs_frame.record_id_l
                left join identity.identity_graph as graph_r
                    on graph_r.record_id = pairs_frame.record_id_r
                """,
                [as_of],
            )
        _update_registry(con, as_of, run_id, assignment)
        counts = con.execute(
            """
            select
                (select count(*) from id_records),
                (select count(distinct customer_id) from identity.identity_graph),
                (select count(*) from identity.identity_graph),
                (select count(*) from identity.unlinkable_records),
                (select count(*) from id_blocked),
                (select count(*) from rejected_frame),
                (select count(*) from identity.identity_graph where link_rule = 'probabilistic')
            """
        ).fetchone()
        summary = {
            "records": counts[0], "customers": counts[1], "linked_records": counts[2],
            "unlinkable_records": counts[3], "blocked_values": counts[4],
            "rejected_links": counts[5],
            "probabilistic_pairs": 0 if pairs is None else pairs.num_rows,
            "probabilistic_links": counts[6],
            "pairs_compared": match.compared if match else 0,
            "merges": sum(c["change_type"] == "merge" for c in assignment.changes),
            "splits": sum(c["change_type"] == "split" for c in assignment.changes),
            "new_customers": len(assignment.new_ids),
            "seconds": round(time.monotonic() - started, 3),
            "matching_seconds": match.seconds if match else 0.0,
        }  # fmt: skip
        con.execute(
            "insert into identity.resolution_runs values "
            "(?, ?, now(), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [run_id, as_of, *summary.values(),  # keys in the column order of the table
             json.dumps(match.parameters if match else None, default=str)],
        )  # fmt: skip
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    finally:
        for name in ("graph_frame", "rejected_frame", "changes_frame", "new_ids_frame",
                     "pairs_frame"):  # fmt: skip
            try:
                con.unregister(name)
            except Exception:  # noqa: BLE001 - not registered on this run
                pass
    return summary


def _update_registry(con, as_of, run_id, assignment) -> None:
    con.execute(
        """
        insert into identity.customers
        select customer_id, anchor_record_id, 'active', null, cast(? as date), cast(? as date),
            now(),
        from new_ids_frame
        """,
        [as_of, as_of],
    )
    con.execute(
        """
        insert into identity.id_changes
        select old_customer_id, new_customer_id, change_type, reason, cast(? as date), ?, now(),
        from changes_frame
        """,
        [as_of, run_id],
    )
    # a merged id points at its survivor, and so does every id that had merged into it
    con.execute(
        """
        update identity.customers set status = 'merged', merged_into = changes.new_customer_id
        from changes_frame as changes
        where changes.change_type = 'merge'
            and identity.customers.customer_id = changes.old_customer_id
        """
    )
    con.execute(
        """
        update identity.customers set merged_into = changes.new_customer_id
        from changes_frame as changes
        where changes.change_type = 'merge'
            and identity.customers.merged_into = changes.old_customer_id
        """
    )
    con.execute(
        """
        update identity.customers set status = 'active', merged_into = null,
            last_as_of_date = greatest(last_as_of_date, cast(? as date))
        where customer_id in (select distinct customer_id from identity.identity_graph)
        """,
        [as_of],
    )
    if assignment.retired:
        con.execute(
            "update identity.customers set status = 'retired' where list_contains(?, customer_id)",
            [sorted(assignment.retired)],
        )
