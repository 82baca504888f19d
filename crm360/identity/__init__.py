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
- `identity.resolution_runs`: one row per run with the counts and timings, and whether
  probabilistic matching ran (or why not, and what its training left out)
- `identity.match_models`: every trained probabilistic model, with when and on how many records
- `identity.match_inputs`: the records the last probabilistic matching compared, as compared
"""

from __future__ import annotations

import json
import logging
import time
from datetime import date
from typing import TYPE_CHECKING

import numpy as np

from crm360.identity.config import IdentityConfig, load_config
from crm360.identity.graph import LinkArrays, cluster_links
from crm360.identity.ids import assign_ids_frame
from crm360.identity.records import load_records
from crm360.warehouse import registered

if TYPE_CHECKING:
    import duckdb
    import polars as pl

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
alter table identity.resolution_runs add column if not exists model_trained_as_of date;
alter table identity.resolution_runs add column if not exists probabilistic_matching varchar;
alter table identity.resolution_runs add column if not exists probabilistic_skipped_reason varchar;
alter table identity.resolution_runs add column if not exists probabilistic_notes varchar[];
create table if not exists identity.match_models (
    trained_as_of date, run_id varchar, records bigint, model_key varchar, model json,
    trained_at timestamp
);
create table if not exists identity.identifier_checks (
    id_type varchar, id_value varchar, reason varchar, rules_key varchar
);
"""

_UNLINKABLE_REASON = {
    "web": "anonymous web device that never logged in",
    "social": "social handle with no e-mail",
    "support": "ticket with no usable e-mail or shop account",
}


def _blocked(con: duckdb.DuckDBPyConnection, config: IdentityConfig) -> list[tuple]:
    """(id_type, id_value, reason) of every identifier value that must link no one.

    Whether an e-mail or phone is a blocked value or matches a blocked pattern depends only on
    the value and the rules, so each value is checked once (in Python: the patterns are
    Python regular expressions) and the answer kept in identity.identifier_checks until the
    rules change; a daily run checks only the values it has not seen before."""
    import polars as pl

    rules = config.blocking_rules_key()
    con.execute("delete from identity.identifier_checks where rules_key <> ?", [rules])
    unseen = con.execute(
        """
        select id_type, id_value
        from (select distinct id_type, id_value from id_identifiers
              where id_type in ('email', 'phone'))
        anti join identity.identifier_checks using (id_type, id_value)
        """
    ).fetchall()
    if unseen:
        checked = pl.DataFrame(
            {
                "id_type": [t for t, _ in unseen],
                "id_value": [v for _, v in unseen],
                "reason": [config.blocked_reason(t, v.lower()) for t, v in unseen],
            },
            schema={"id_type": pl.String, "id_value": pl.String, "reason": pl.String},
        )
        with registered(con, "identifier_checks_frame", checked):
            con.execute(
                "insert into identity.identifier_checks "
                "select id_type, id_value, reason, ? from identifier_checks_frame",
                [rules],
            )
    rows = con.execute(
        """
        select id_type, id_value, reason
        from identity.identifier_checks
        semi join id_identifiers using (id_type, id_value)
        where reason is not null
        order by id_type, id_value
        """
    ).fetchall()
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
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Each record sharing a usable identifier value is linked to the value's first record
    (highest-ranked source); links come out in identifier priority order. For the identifier
    types in `confirm_with_name` (a phone is often a household's), two records that both carry
    a name must also carry similar names, else the link is refused. Returns the links (a, b,
    rule, probability) and the refused ones (with a reason), both in priority order."""
    import polars as pl

    order = " ".join(f"when '{t}' then {i}" for i, t in enumerate(config.identifier_priority))
    rows = con.sql(
        f"""
        with hubs as (
            select id_type, id_value, min(idx) as hub,
            from id_usable
            group by all
            having count(*) > 1
        ),
        pairs as (
            select hubs.hub as a, usable.idx as b, usable.id_type, usable.source,
                list_contains($types, usable.id_type) as confirm,
            from id_usable as usable
            inner join hubs using (id_type, id_value)
            where usable.idx <> hubs.hub
        ),
        -- names are compared once per pair of records whose link needs them, not joined to
        -- every link (a fifth of the links at a million people)
        named_pairs as (
            select to_confirm.a, to_confirm.b,
                hub_record.name_kana is null or member.name_kana is null
                or jaro_winkler_similarity(hub_record.name_kana, member.name_kana) >= $similar
                or jaro_winkler_similarity(hub_record.name, member.name) >= $similar
                as names_agree,
            from (select distinct a, b from pairs where confirm) as to_confirm
            inner join id_records as hub_record on hub_record.idx = to_confirm.a
            inner join id_records as member on member.idx = to_confirm.b
        )
        select pairs.a, pairs.b,
            case when pairs.source = 'web' then 'web_login' else pairs.id_type end as rule,
            cast(null as double) as probability,
            coalesce(named_pairs.names_agree, true) as names_agree,
        from pairs
        left join named_pairs
            on pairs.confirm and named_pairs.a = pairs.a and named_pairs.b = pairs.b
        order by case pairs.id_type {order} end, pairs.a, pairs.b
        """,
        params={"types": list(config.confirm_with_name), "similar": config.name_similarity},
    ).pl()
    links = rows.filter(pl.col("names_agree")).drop("names_agree")
    refused = rows.filter(~pl.col("names_agree")).select(
        "a", "b", "rule", "probability",
        reason=pl.col("rule") + " shared by records with different names",
    )  # fmt: skip
    return links, refused


def _previous_match(con, config: IdentityConfig, as_of: date, records: int):
    """The last run's model, records and pairs when its model may be reused, else None: the
    model was trained under the same settings, fewer than `retrain_after_days` days before
    `as_of` and on a number of records within `retrain_after_growth` of today's."""
    from crm360.identity.matching import PreviousMatch

    settings = config.probabilistic
    rows = con.execute(
        "select trained_as_of, records, model_key, model from identity.match_models "
        "order by trained_at desc limit 1"
    ).fetchall()
    query = "select table_name from duckdb_tables() where schema_name = 'identity'"
    tables = {t for (t,) in con.execute(query).fetchall()}
    if not rows or not {"match_inputs", "match_pairs"} <= tables:
        return None
    trained_as_of, trained_records, key, model = rows[0]
    if (
        key != settings.model_key()
        or not 0 <= (as_of - trained_as_of).days < settings.retrain_after_days
        or abs(records - trained_records) > settings.retrain_after_growth * trained_records
    ):
        return None
    return PreviousMatch(
        model=json.loads(model),
        trained_as_of=trained_as_of,
        trained_records=trained_records,
        inputs=con.sql("select * from identity.match_inputs").to_arrow_table(),
        pairs=con.sql(
            "select record_id_l, record_id_r, match_probability, match_weight "
            "from identity.match_pairs"
        ).to_arrow_table(),
    )


def _probabilistic_status(reason: str | None = None, notes=()) -> dict:
    """How probabilistic matching went, for the run's summary and its resolution_runs row:
    ran or skipped, why it was skipped, and what its training left out or assumed."""
    if reason is not None:
        log.warning("probabilistic matching skipped: %s", reason)
    return {
        "probabilistic_matching": "skipped" if reason else "ran",
        "probabilistic_skipped_reason": reason,
        "probabilistic_notes": list(notes),
    }


def _probabilistic_links(con, config: IdentityConfig, as_of: date):
    """The probabilistic links (a, b, rule, probability) and the match result, both None when
    matching is skipped, and the status (`_probabilistic_status`)."""
    import polars as pl

    from crm360.identity.matching import match_records

    if not config.probabilistic.enabled:
        return None, None, _probabilistic_status("probabilistic.enabled is false")
    records = con.sql(
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
        reason = (f"{records.num_rows} CRM/shop records, fewer than min_records "
                  f"{config.probabilistic.min_records}")  # fmt: skip
        return None, None, _probabilistic_status(reason)
    previous = _previous_match(con, config, as_of, records.num_rows)
    result = match_records(records, config.probabilistic, previous)
    if result.skipped:
        return None, None, _probabilistic_status(result.skipped, result.notes)
    result.inputs = records
    result.model_key = config.probabilistic.model_key()
    result.trained_as_of = as_of if result.trained else previous.trained_as_of
    pairs = pl.from_arrow(result.pairs).with_row_index("position")
    with registered(con, "pairs_index_frame", pairs):
        links = con.sql(
            """
            select l.idx as a, r.idx as b, 'probabilistic' as rule,
                pairs.match_probability as probability,
            from pairs_index_frame as pairs
            inner join id_records as l on l.record_id = pairs.record_id_l
            inner join id_records as r on r.record_id = pairs.record_id_r
            order by pairs.position
            """
        ).pl()
    return links, result, _probabilistic_status(notes=result.notes)


class _Phases:
    """Seconds spent in each phase of a resolution, for the run's summary (not its table)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._since = time.monotonic()

    def end(self, phase: str) -> None:
        now = time.monotonic()
        self.seconds[phase] = round(now - self._since, 3)
        self._since = now


def resolve(
    con: duckdb.DuckDBPyConnection, as_of: date, run_id: str, config: IdentityConfig
) -> dict:
    """Resolve identities as of `as_of`; write the identity schema in one transaction.

    Returns the run's summary (the row written to identity.resolution_runs, where
    `probabilistic_matching`, `probabilistic_skipped_reason` and `probabilistic_notes` say
    whether probabilistic matching ran, why not, and what its training left out) with, beside
    it, `phase_seconds`: the seconds spent reading the records, linking deterministically and
    probabilistically, clustering, assigning ids and writing."""
    import polars as pl

    started = time.monotonic()
    phases = _Phases()
    con.execute(_DDL)
    n = load_records(con)
    blocked = _blocked(con, config)
    con.execute("create or replace temp table id_blocked (id_type varchar, id_value varchar, "
                "reason varchar)")  # fmt: skip
    if blocked:
        # one insert of a frame: executemany runs one statement per value (19k values took
        # 2.7 s at a million people)
        frame = pl.DataFrame(blocked, schema=["id_type", "id_value", "reason"], orient="row")
        with registered(con, "id_blocked_frame", frame):
            con.execute("insert into id_blocked select * from id_blocked_frame")
    con.execute(
        "create or replace temp table id_usable as "
        "select * from id_identifiers anti join id_blocked using (id_type, id_value)"
    )
    phases.end("records")

    links, refused = _deterministic_links(con, config)
    phases.end("deterministic")
    prob_links, match, status = _probabilistic_links(con, config, as_of)
    if prob_links is not None:
        links = pl.concat([links, prob_links.cast(links.schema)])
    phases.end("probabilistic")
    arrays = LinkArrays(
        a=links["a"].to_numpy(), b=links["b"].to_numpy(),
        rule=links["rule"].to_numpy(), probability=links["probability"].to_numpy(),
    )  # fmt: skip
    limited = con.sql(
        "select idx, id_type, id_value from id_usable where list_contains($types, id_type)",
        params={"types": list(config.max_per_cluster)},
    ).pl()
    clusters = cluster_links(n, arrays, limited, config.max_per_cluster)
    phases.end("clustering")

    has_identifier = np.zeros(n, dtype=bool)
    has_identifier[con.sql("select distinct idx from id_usable").fetchnumpy()["idx"]] = True
    size = np.bincount(clusters.root_of, minlength=n)
    customer = (size[clusters.root_of] > 1) | has_identifier
    records = con.sql(
        "select record_id, source, source_key from id_records order by idx").pl()  # fmt: skip
    first = clusters.first_link
    linked = first >= 0
    # the joining link of each record, as columns; a record with none points past the end
    pick = np.where(linked, first, len(arrays.a))
    a, b = np.append(arrays.a, -1)[pick], np.append(arrays.b, -1)[pick]
    members = records.with_columns(
        idx=pl.int_range(n, dtype=pl.Int64),
        root=pl.Series(clusters.root_of),
        rule=links["rule"].cast(pl.String).extend_constant(None, 1).gather(pick),
        probability=links["probability"].extend_constant(None, 1).gather(pick),
        other=pl.Series(np.where(a == np.arange(n), b, a)),
    ).filter(pl.Series(customer))
    previous = con.sql("select record_id, customer_id from identity.identity_graph").pl()
    registry = con.sql(
        "select customer_id, first_as_of_date, issued_at from identity.customers").pl()  # fmt: skip
    assignment = assign_ids_frame(
        members.select("idx", "root", "record_id", pl.col("rule").cast(pl.String)),
        previous, registry,
    )  # fmt: skip
    graph = (
        members.join(assignment.customer_of, on="root")
        .join(records.select(other_record="record_id").with_row_index("other")
              .with_columns(pl.col("other").cast(pl.Int64)), on="other", how="left")  # fmt: skip
        .select(
            "record_id", "source", "source_key", "customer_id",
            link_rule=pl.col("rule").cast(pl.String).fill_null("anchor"),
            linked_to_record_id="other_record",
            match_probability=pl.col("probability").cast(pl.Float64),
        )
    )  # fmt: skip
    rejected = pl.concat(
        [
            refused,
            links[[p for p, _ in clusters.rejected]].with_columns(
                reason=pl.Series([why for _, why in clusters.rejected], dtype=pl.String)
            ),
        ]
    ).join(records.select("record_id").with_row_index("a").with_columns(pl.col("a").cast(pl.Int64)),
           on="a", how="left", maintain_order="left")  # fmt: skip
    rejected = rejected.join(
        records.select(record_id_b="record_id").with_row_index("b")
        .with_columns(pl.col("b").cast(pl.Int64)), on="b", how="left", maintain_order="left",
    ).select(
        record_id_a="record_id", record_id_b="record_id_b", link_rule="rule",
        match_probability="probability", reason="reason",
    )  # fmt: skip

    phases.end("ids")
    summary = _write(con, as_of, run_id, graph, rejected, assignment, match, status, started)
    phases.end("write")
    summary["phase_seconds"] = phases.seconds
    if match is not None:
        summary["probabilistic_model"] = (
            "trained" if match.trained else f"reused (trained as of {match.trained_as_of})"
        )
    log.info("identity resolution: %s", summary)
    return summary


def _write(con, as_of, run_id, graph, rejected, assignment, match, status, started) -> dict:
    import polars as pl

    pairs = match.pairs if match else None
    con.register("graph_frame", graph)
    con.register("rejected_frame", rejected)
    con.register("changes_frame", assignment.changes)
    con.register("new_ids_frame", assignment.new_ids)
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
            _write_model(con, as_of, run_id, match)
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
            "merges": assignment.changes.filter(pl.col("change_type") == "merge").height,
            "splits": assignment.changes.filter(pl.col("change_type") == "split").height,
            "new_customers": assignment.new_ids.height,
            "seconds": round(time.monotonic() - started, 3),
            "matching_seconds": match.seconds if match else 0.0,
            **status,
        }  # fmt: skip
        columns = ["run_id", "as_of_date", *summary, "model", "model_trained_as_of"]
        con.execute(
            f"insert into identity.resolution_runs ({', '.join(columns)}, resolved_at) "
            f"values ({', '.join('?' * len(columns))}, now())",
            [run_id, as_of, *summary.values(),
             json.dumps(match.parameters if match else None, default=str),
             match.trained_as_of if match else None],
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


def _write_model(con, as_of, run_id, match) -> None:
    """The records just compared (what the next run compares against), and a trained model."""
    with registered(con, "match_inputs_frame", match.inputs):
        con.execute(
            "create or replace table identity.match_inputs as select * from match_inputs_frame"
        )
    if match.trained:
        con.execute(
            "insert into identity.match_models values (?, ?, ?, ?, ?, now())",
            [as_of, run_id, match.inputs.num_rows, match.model_key,
             json.dumps(match.parameters, default=str)],
        )  # fmt: skip


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
