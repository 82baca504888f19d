"""Erasure (APPI 利用停止・消去, GDPR art. 17): a deletion request anonymises the person in every
table of the warehouse, in the run that first sees it.

Who: every customer whose identity links a CRM contact with `deletion_requested`. What: every
source record identity linked to them, and every row that names one of those records or one of
their e-mails or phones (a web event with the e-mail typed in, a ticket from that address).

- raw: the row's personal columns (the contract's `pii` columns, and any column the contract
  does not know) become NULL; facts (orders, amounts, dates) stay, so revenue still adds up.
  Quarantined rows of the person are replaced by `{"erased": true}`.
- every other table (staging, identity, intermediate, marts, snapshots, quality, ops): the
  personal columns (crm360.privacy.columns.PII_COLUMNS) of the person's rows become NULL, and
  any cell anywhere that still equals one of their e-mails or phones too; text and JSON cells
  (quality results, run reports) have them replaced by `[erased]`.
- kept, as the law allows: `privacy.erasures` (customer id, when, how much was erased) and
  `privacy.erased_keys`, a salted hash of each erased identifier and record key. A later
  batch's row that hashes to one of them is anonymised as it is loaded (`anonymise_batch`), so
  a re-sent row does not bring the person back.

The files the pipeline wrote before (exports, Data Docs, logs) are scrubbed by
crm360.privacy.files with the values this step returns; freed pages of the database file are
dropped when the warehouse is next published (crm360.warehouse.compact).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from crm360.privacy.columns import (
    KEY_COLUMNS,
    PERSON_REFERENCES,
    PII_COLUMNS,
    identifier_kind,
    is_identifier,
    normal,
    raw_personal,
)
from crm360.privacy.columns import quote as _quote

if TYPE_CHECKING:
    import duckdb
    import polars as pl

    from ingestion.contracts import ObjectContract

log = logging.getLogger(__name__)

DDL = """
create schema if not exists privacy;
create table if not exists privacy.erased_keys (
    key_hash varchar primary key, kind varchar not null, erasure_id varchar not null,
    erased_at timestamptz not null
);
create table if not exists privacy.erasures (
    erasure_id varchar primary key, customer_id varchar, run_id varchar, as_of_date date,
    erased_at timestamptz not null, records bigint, raw_rows bigint, cells bigint,
    compacted_at timestamptz
);
"""

ERASED_TEXT = "[erased]"
_SKIPPED_SCHEMAS = ("raw", "privacy", "information_schema", "pg_catalog")
# schemas whose text and JSON cells may quote a value inside a longer text
_TEXT_SCHEMAS = ("quality", "ops")


@dataclass
class ErasureResult:
    customers: int = 0
    records: int = 0
    raw_rows: int = 0
    cells: int = 0
    customer_ids: set[str] = field(default_factory=set)
    files: dict = field(default_factory=dict)
    # the erased people's identifying values, for scrubbing files; never stored or logged
    values: set[str] = field(default_factory=set, repr=False)

    def summary(self) -> dict:
        return {
            "customers_erased": self.customers,
            "records_erased": self.records,
            "raw_rows_anonymised": self.raw_rows,
            "cells_erased": self.cells,
            **self.files,
        }


def _hash_sql(kind: str, expression: str) -> str:
    """SQL: the salted hash of an identifier as stored in privacy.erased_keys (the key is the
    first parameter, `$key`)."""
    return f"sha256($key || ':{kind}:' || {expression})"


def _exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(
        con.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = ? and table_name = ?",
            [schema, table],
        ).fetchall()[0][0]
    )


def _columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> dict[str, str]:
    return dict(
        con.execute(
            "select column_name, data_type from information_schema.columns "
            "where table_schema = ? and table_name = ? order by ordinal_position",
            [schema, table],
        ).fetchall()
    )


def _raw_personal_columns(contract: ObjectContract, columns: dict[str, str]) -> list[str]:
    return [name for name in columns if raw_personal(contract, name)]


def _match(columns: list[tuple[str, str]]) -> str:
    """SQL: the row names an erased record or identifier (temp table _erase_plain)."""
    tests = [
        f"{normal(kind, _quote(column))} in (select normal from _erase_plain where kind = '{kind}')"
        for kind, column in columns
    ]
    return " or ".join(tests) or "false"


def _reference_columns(contract: ObjectContract, present: dict[str, str]) -> list[tuple[str, str]]:
    references = [
        (kind, column)
        for kind, column in PERSON_REFERENCES.get((contract.source, contract.name), ())
        if column in present
    ]
    for name, column in contract.columns.items():
        kind = identifier_kind(name)
        if column.pii and kind and name in present:
            references.append((kind, name))
    return references


def _requested_customers(con: duckdb.DuckDBPyConnection) -> None:
    """Temp table _erase_customers: customers with a deletion request."""
    con.execute(
        """
        create or replace temp table _erase_customers as
        select distinct graph.customer_id
        from identity.identity_graph as graph
        inner join staging.stg_crm__contacts as contacts
            on graph.source = 'crm' and graph.source_key = contacts.contact_id
        where contacts.is_deletion_requested
        """
    )


def _new_keys(con: duckdb.DuckDBPyConnection, key: str) -> None:
    """Temp table _erase_plain (customer_id, kind, normal, key_hash): the requested customers'
    record keys, e-mails and phones not erased before."""
    con.execute(
        f"""
        create or replace temp table _erase_all as
        select distinct customer_id, kind, normal from (
            select customer_id, source as kind, {normal("key", "source_key")} as normal
            from identity.identity_graph semi join _erase_customers using (customer_id)
            union all
            select customer_id, id_type,
                case id_type when 'email' then {normal("email", "id_value")}
                    else {normal("phone", "id_value")} end
            from identity.customer_identifiers semi join _erase_customers using (customer_id)
            where id_type in ('email', 'phone')
                -- a placeholder or a value shared by several people is not this person's
                and (id_type, id_value) not in (
                    select (id_type, id_value) from identity.blocked_identifiers
                    union all
                    select (id_type, id_value) from identity.customer_identifiers
                    where customer_id not in (select customer_id from _erase_customers)
                )
        )
        where normal is not null
        """
    )
    con.execute(
        f"""
        create or replace temp table _erase_plain as
        select *, {_hash_sql("' || kind || '", "normal")} as key_hash
        from _erase_all
        """,
        {"key": key},
    )
    con.execute(
        "delete from _erase_plain where key_hash in (select key_hash from privacy.erased_keys)"
    )


def _anonymise_raw(
    con: duckdb.DuckDBPyConnection, contracts: list[ObjectContract], result: ErasureResult
) -> None:
    for contract in contracts:
        table = contract.raw_table
        if not _exists(con, "raw", table):
            continue
        present = _columns(con, "raw", table)
        personal = _raw_personal_columns(contract, present)
        references = _reference_columns(contract, present)
        if not personal or not references:
            continue
        relation = f"raw.{_quote(table)}"
        keys = [c for kind, c in references if kind == "social" and c in personal]
        where = (
            f"({' or '.join(f'{_quote(c)} is not null' for c in personal)}) "
            f"and ({_match(references)})"
        )
        rows = con.execute(
            f"select {', '.join(_quote(c) for c in personal)} from {relation} where {where}"
        ).fetchall()
        for row in rows:
            result.values.update(_full_names(dict(zip(personal, row, strict=True))))
        # e-mails and phones as written, those that are the person's own (not a placeholder
        # or a shared value: those are not in _erase_all)
        for kind, column in references:
            if kind in ("email", "phone") and column in personal:
                result.values.update(
                    value
                    for (value,) in con.execute(
                        f"select distinct {_quote(column)} from {relation} where ({where}) "
                        f"and {normal(kind, _quote(column))} in "
                        f"(select normal from _erase_all where kind = '{kind}')"
                    ).fetchall()
                    if value and value.strip()
                )
        assignments = [
            f"{_quote(c)} = "
            + (
                f"coalesce((select new from _erase_pseudonyms where old = {_quote(c)}), "
                f"{_quote(c)})"
                if c in keys
                else "null"
            )
            for c in personal
        ]
        changed = con.execute(
            f"update {relation} set {', '.join(assignments)} where {where}"
        ).fetchall()[0][0]
        result.raw_rows += changed
        quarantined = " or ".join(
            f"{normal(kind, f'(record ->> {_literal(column)})')} in "
            f"(select normal from _erase_plain where kind = '{kind}')"
            for kind, column in references
        )
        con.execute(
            "update raw._quarantine set record = '{\"erased\": true}' "
            f"where source = ? and object = ? and ({quarantined})",
            [contract.source, contract.name],
        )


def _full_names(row: dict) -> set[str]:
    """A row's full names as written (kanji and kana, with and without a space between family
    and given name): what names the person in free text."""
    values = set()
    for column in ("full_name", "full_name_kana"):
        if isinstance(row.get(column), str) and row[column].strip():
            values.add(row[column].strip())
    for suffix in ("", "_kana"):
        last, first = row.get(f"last_name{suffix}"), row.get(f"first_name{suffix}")
        if last and first:
            for space in ("", " ", "\u3000"):
                values.add(f"{last.strip()}{space}{first.strip()}")
    return {v for v in values if len(v) >= 3}


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _anonymise_tables(con: duckdb.DuckDBPyConnection, result: ErasureResult) -> None:
    """Every other base table: the person's rows lose their personal columns; any varchar cell
    equal to one of their identifiers is emptied; text in quality and ops is scrubbed."""
    tables = con.execute(
        "select table_schema, table_name from information_schema.tables "
        "where table_type = 'BASE TABLE' and table_schema not in "
        f"({', '.join(map(_literal, _SKIPPED_SCHEMAS))}) and table_catalog = current_database() "
        "order by all"
    ).fetchall()
    identifiers = sorted(
        {
            v
            for (v,) in con.execute(
                "select normal from _erase_all where kind in ('email', 'phone')"
            ).fetchall()
        }
        | {v for v in result.values if is_identifier(v)}
    )
    con.execute("create or replace temp table _erase_values (value varchar)")
    con.executemany("insert into _erase_values values (?)", [[v] for v in identifiers])
    for schema, table in tables:
        columns = _columns(con, schema, table)
        relation = f"{_quote(schema)}.{_quote(table)}"
        personal = [c for c in columns if c in PII_COLUMNS and c not in KEY_COLUMNS]
        tests = []
        if "customer_id" in columns:
            tests.append("customer_id in (select customer_id from _erase_customers)")
        if "record_id" in columns:
            tests.append(
                "record_id in (select kind || ':' || normal from _erase_all "
                "where kind in ('crm', 'shop', 'support', 'web', 'social'))"
            )
        tests += [
            f"{normal(kind, _quote(column))} in "
            f"(select normal from _erase_all where kind = '{kind}')"
            for column, kind in KEY_COLUMNS.items()
            if column in columns
        ]
        tests += [
            f"{normal(kind, _quote(column))} in "
            f"(select normal from _erase_all where kind = '{kind}')"
            for column in personal
            if (kind := identifier_kind(column))
        ]
        if "id_type" in columns and "id_value" in columns:
            tests.append(
                f"(id_type = 'email' and {normal('email', 'id_value')} in "
                "(select normal from _erase_all where kind = 'email')) or "
                f"(id_type = 'phone' and {normal('phone', 'id_value')} in "
                "(select normal from _erase_all where kind = 'phone'))"
            )
        # identity's tables of values (identifiers, checks, match inputs) are rebuilt from
        # staging: the person's rows go, rather than leave a NULL value behind
        removing = schema == "identity"
        if personal and tests:
            result.cells += len(personal) * con.execute(
                (f"delete from {relation}" if removing else
                 f"update {relation} set {', '.join(f'{_quote(c)} = null' for c in personal)}")
                + f" where ({' or '.join(tests)}) "
                f"and ({' or '.join(f'{_quote(c)} is not null' for c in personal)})"
            ).fetchall()[0][0]  # fmt: skip
        for column, kind in columns.items():
            if kind != "VARCHAR":
                continue
            result.cells += con.execute(
                f"update {relation} set {_quote(column)} = m.new from _erase_pseudonyms as m "
                f"where {relation}.{_quote(column)} = m.old"
            ).fetchall()[0][0]
            if not identifiers:
                continue
            result.cells += con.execute(
                (f"delete from {relation}" if removing else
                 f"update {relation} set {_quote(column)} = null")
                + f" where {_quote(column)} in (select value from _erase_values)"
            ).fetchall()[0][0]  # fmt: skip
        if schema in _TEXT_SCHEMAS:
            _scrub_text(con, relation, columns, result)


def _scrub_text(
    con: duckdb.DuckDBPyConnection, relation: str, columns: dict[str, str], result: ErasureResult
) -> None:
    import re

    forms = set()
    for value in result.values:
        forms.add(value)
        forms.add(json.dumps(value)[1:-1])  # as an ASCII-escaped JSON string holds it
    if not forms:
        return
    pattern = "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True))
    for column, kind in columns.items():
        if kind not in ("VARCHAR", "JSON"):
            continue
        text = f"cast({_quote(column)} as varchar)"
        result.cells += con.execute(
            f"update {relation} set {_quote(column)} = "
            f"cast(regexp_replace({text}, $pattern, $erased, 'g') as {kind}) "
            f"where regexp_matches({text}, $pattern)",
            {"pattern": pattern, "erased": ERASED_TEXT},
        ).fetchall()[0][0]


def erase(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    as_of: date,
    key: str,
    contracts: list[ObjectContract],
    scrub_files: Callable[[ErasureResult], dict] | None = None,
) -> ErasureResult:
    """Anonymise every customer with a deletion request not erased before, in one transaction,
    and record the erasure. Returns the counts and (in memory) the values erased.

    `scrub_files(result)` scrubs the files written before, inside the transaction: should it
    fail, nothing is committed and a retry finds the same people and values again."""
    con.execute(DDL)
    result = ErasureResult()
    if not (
        _exists(con, "identity", "identity_graph") and _exists(con, "staging", "stg_crm__contacts")
    ):
        return result
    con.execute("begin transaction")
    try:
        _requested_customers(con)
        _new_keys(con, key)
        customers = [c for (c,) in con.execute(
            "select distinct customer_id from _erase_plain order by 1").fetchall()]  # fmt: skip
        if not customers:
            con.execute("rollback")
            return result
        con.execute(
            "create or replace temp table _erase_customers as "
            "select distinct customer_id from _erase_plain"
        )
        con.execute(
            "create or replace temp table _erase_all as "
            "select * from _erase_all semi join _erase_customers using (customer_id)"
        )
        # a handle is both personal and a record's key: it becomes a pseudonym, the same in
        # every table, so that the identity graph stays whole
        con.execute(
            f"""
            create or replace temp table _erase_pseudonyms as
            select distinct normal as old,
                'erased-' || left({_hash_sql("pseudonym", "normal")}, 16) as new
            from _erase_all where kind = 'social'
            union all
            select distinct 'social:' || normal,
                'social:erased-' || left({_hash_sql("pseudonym", "normal")}, 16)
            from _erase_all where kind = 'social'
            """,
            {"key": key},
        )
        result.customers = len(customers)
        result.customer_ids = set(customers)
        result.records = con.execute(
            "select count(*) from _erase_all where kind not in ('email', 'phone')"
        ).fetchall()[0][0]
        result.values.update(
            v for (v,) in con.execute("select normal from _erase_all "
                                      "where kind in ('email', 'phone', 'social')").fetchall()
        )  # fmt: skip
        _anonymise_raw(con, contracts, result)
        _anonymise_tables(con, result)
        erased_at = datetime.now(UTC)
        ids = {customer: uuid.uuid4().hex for customer in customers}
        con.execute(
            "create or replace temp table _erasure_ids (customer_id varchar, erasure_id varchar)"
        )
        con.executemany("insert into _erasure_ids values (?, ?)", [[c, i] for c, i in ids.items()])
        con.execute(
            "insert into privacy.erased_keys "
            "select distinct on (key_hash) key_hash, kind, erasure_id, ? "
            "from _erase_plain join _erasure_ids using (customer_id) "
            "on conflict do nothing",
            [erased_at],
        )
        con.execute(
            "insert into privacy.erasures select erasure_id, customer_id, ?, ?, ?, "
            "(select count(*) from _erase_all as k where k.customer_id = i.customer_id "
            " and kind not in ('email', 'phone')), ?, ?, null from _erasure_ids as i",
            [run_id, as_of, erased_at, result.raw_rows, result.cells],
        )
        if scrub_files is not None:
            result.files = scrub_files(result)
        for temp in (
            "_erase_plain",
            "_erase_all",
            "_erase_customers",
            "_erase_values",
            "_erasure_ids",
            "_erase_pseudonyms",
        ):
            con.execute(f"drop table if exists {temp}")
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    log.info(
        "erased %d customer(s): %d record(s), %d raw row(s) anonymised, %d cell(s) emptied",
        result.customers, result.records, result.raw_rows, result.cells,
    )  # fmt: skip
    return result


def anonymise_batch(
    con: duckdb.DuckDBPyConnection, contract: ObjectContract, frame: pl.DataFrame
) -> tuple[pl.DataFrame, int]:
    """A batch about to be loaded, with the personal columns of every row that names an erased
    person emptied (and `deletion_requested` set, when the object has it); and how many rows
    that was. Nothing to do until someone is erased."""
    import polars as pl

    if not _exists(con, "privacy", "erased_keys"):
        return frame, 0
    if not con.execute("select count(*) > 0 from privacy.erased_keys").fetchall()[0][0]:
        return frame, 0
    present = dict.fromkeys(frame.columns, "VARCHAR")
    references = _reference_columns(contract, present)
    personal = _raw_personal_columns(contract, present)
    if not references or not personal or frame.height == 0:
        return frame, 0
    tests = " or ".join(
        f"{_hash_sql(kind, normal(kind, _quote(column)))} in "
        "(select key_hash from privacy.erased_keys)"
        for kind, column in references
    )
    from crm360.privacy.keys import key_for

    key = key_for(con)
    columns = sorted({column for _, column in references})
    con.register("_erasure_batch", frame.select(pl.int_range(pl.len()).alias("_row"),
                                                *[pl.col(c) for c in columns]))  # fmt: skip
    try:
        rows = [r for (r,) in con.execute(
            f"select _row from _erasure_batch where {tests}", {"key": key}).fetchall()]  # fmt: skip
    finally:
        con.unregister("_erasure_batch")
    if not rows:
        return frame, 0
    erased = pl.int_range(pl.len()).is_in(rows)
    updates = [pl.when(erased).then(None).otherwise(pl.col(c)).alias(c) for c in personal]
    if "deletion_requested" in frame.columns:
        updates.append(
            pl.when(erased).then(pl.lit("true")).otherwise(pl.col("deletion_requested"))
            .alias("deletion_requested")
        )  # fmt: skip
    log.info("%s.%s: %d row(s) of erased people anonymised as loaded",
             contract.source, contract.name, len(rows))  # fmt: skip
    return frame.with_columns(updates), len(rows)
