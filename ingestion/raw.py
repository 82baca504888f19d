"""Appending one batch of a source object to the DuckDB `raw` schema, with audit and quarantine.

A load is one transaction: the rows that pass the object's contract are appended to its raw
table (columns as text, plus `_load_id`, `_source`, `_source_location`, `_source_row`,
`_loaded_at`), rejected rows go to `raw._quarantine` with their reason and original values,
`raw._loads` gets a row whose counts reconcile (rows read = rows loaded + rows quarantined),
and the caller's load-state statements (file registry, watermark) run in the same transaction.
A failure rolls everything back: nothing half-loaded, no state that claims otherwise.

A file that cannot be read at all (quarantine_file) is one row of `raw._quarantine` (row 0,
the reason, the file's name as the record) and a `raw._loads` row that counts it as one row
read and quarantined, so that the counts still reconcile.

Schema drift: a column the contract does not know is kept (added to the raw table) and logged;
a missing required column fails the load with the file and column named.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from crm360.privacy.erasure import anonymise_batch
from ingestion.contracts import ContractError, ObjectContract, check_sql, duplicate_keys_sql
from ingestion.mapping import ObjectMapping, conform

if TYPE_CHECKING:
    import duckdb
    import polars as pl

log = logging.getLogger(__name__)

META_COLUMNS = ("_load_id", "_source", "_source_location", "_source_row", "_loaded_at")

_META_DDL = """
create schema if not exists raw;
create table if not exists raw._loads (
    load_id varchar primary key,
    run_id varchar,
    source varchar not null,
    object varchar not null,
    source_location varchar not null,
    rows_read bigint not null,
    rows_loaded bigint not null,
    rows_quarantined bigint not null,
    unexpected_columns varchar[],
    started_at timestamptz not null,
    finished_at timestamptz not null
);
create table if not exists raw._quarantine (
    load_id varchar not null,
    source varchar not null,
    object varchar not null,
    source_location varchar not null,
    source_row bigint not null,
    reason varchar not null,
    record json not null,
    quarantined_at timestamptz not null
);
create table if not exists raw._files (
    source varchar not null,
    object varchar not null,
    file_name varchar not null,
    sha256 varchar not null,
    size_bytes bigint not null,
    encoding varchar,
    load_id varchar not null,
    loaded_at timestamptz not null,
    primary key (source, object, file_name, sha256)
);
alter table raw._files add column if not exists modified_ns bigint;
create table if not exists raw._watermarks (
    source varchar not null,
    object varchar not null,
    watermark varchar not null,
    load_id varchar not null,
    updated_at timestamptz not null,
    primary key (source, object)
);
"""


@dataclass(frozen=True)
class LoadResult:
    load_id: str
    source: str
    object: str
    source_location: str
    rows_read: int
    rows_loaded: int
    rows_quarantined: int

    def as_dict(self) -> dict:
        return self.__dict__.copy()


@dataclass(frozen=True)
class StateUpdate:
    """A statement recording load state, run inside the load's transaction.

    A parameter given as `...` (Ellipsis) is replaced by the load's id.
    """

    sql: str
    params: tuple


def ensure_raw_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(_META_DDL)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _prepare_table(
    con: duckdb.DuckDBPyConnection, contract: ObjectContract, columns: list[str]
) -> None:
    """Create the raw table on first load; add columns that appear later (schema drift)."""
    table = f"raw.{contract.raw_table}"
    existing = [
        row[0]
        for row in con.execute(
            "select column_name from information_schema.columns "
            "where table_schema = 'raw' and table_name = ? order by ordinal_position",
            [contract.raw_table],
        ).fetchall()
    ]
    if not existing:
        data = [c for c in contract.columns if c not in columns] + columns
        ddl = ", ".join(f"{_quote(c)} varchar" for c in data)
        con.execute(
            f"create table {table} ({ddl}, _load_id varchar, _source varchar, "
            "_source_location varchar, _source_row bigint, _loaded_at timestamptz)"
        )
        return
    for column in columns:
        if column not in existing:
            log.warning(
                "raw.%s: adding column %s that appeared in the source", contract.raw_table, column
            )
            con.execute(f"alter table {table} add column {_quote(column)} varchar")


def _roll_back(con: duckdb.DuckDBPyConnection, cause: BaseException) -> None:
    """Roll the load back. A failure that already ended the transaction (a full disk, an I/O
    error) makes DuckDB refuse the rollback ("no transaction is active"): that is logged, and
    the caller re-raises the cause instead, the error a person can act on."""
    import duckdb

    try:
        con.execute("rollback")
    except duckdb.Error as rollback_error:
        log.warning("rollback after %s: %s", type(cause).__name__, rollback_error)


def ensure_raw_tables(con: duckdb.DuckDBPyConnection, contracts: list[ObjectContract]) -> None:
    """Every object's raw table, empty with its contract's columns until data arrives, so that
    a source that is absent (not configured, disabled, no file yet) leaves its staging models
    empty instead of failing them."""
    ensure_raw_schema(con)
    for contract in contracts:
        _prepare_table(con, contract, [])


def load_object(
    con: duckdb.DuckDBPyConnection,
    contract: ObjectContract,
    frame: pl.DataFrame,
    source_location: str,
    run_id: str | None = None,
    state: list[StateUpdate] | tuple[StateUpdate, ...] = (),
    extra_rejects: pl.Series | None = None,
    mapping: ObjectMapping | None = None,
) -> LoadResult:
    """Map `frame` (text columns, as read) to the contract (ingestion.mapping), check it
    against `contract` and append it in one transaction.

    `extra_rejects` is an optional per-row reason decided before SQL (e.g. invalid encoding).
    """
    import polars as pl

    if frame.width == 0:  # an empty file: a batch of no rows
        frame = pl.DataFrame(schema=dict.fromkeys(contract.columns, pl.String))
    frame = conform(frame, contract, mapping or ObjectMapping(), source_location)
    # a row about someone erased before stays anonymous (crm360.privacy.erasure)
    frame, erased = anonymise_batch(con, contract, frame)
    missing = [c for c in contract.required_columns if c not in frame.columns]
    if missing:
        raise ContractError(
            f"{source_location}: required column(s) {', '.join(missing)} missing "
            f"from {contract.source}.{contract.name} (found: {', '.join(frame.columns)}); "
            "if the source names them differently, map its names to the contract's under "
            f"`columns:` of {contract.source}.{contract.name} in the sources config"
        )
    unexpected = [c for c in frame.columns if c not in contract.columns]
    if unexpected:
        log.warning("%s: unexpected column(s) kept: %s", source_location, ", ".join(unexpected))

    started_at = datetime.now(UTC)
    load_id = uuid.uuid4().hex
    staged = frame.with_row_index("_source_row", offset=1).with_columns(
        (extra_rejects if extra_rejects is not None else pl.lit(None, pl.String)).alias(
            "_pre_reject"
        )
    )
    ensure_raw_schema(con)
    quoted = [_quote(c) for c in frame.columns]
    record = ", ".join(f"{q} := {q}" for q in quoted) or "empty := null"
    con.register("_incoming", staged)
    try:
        con.execute("begin transaction")
        _prepare_table(con, contract, list(frame.columns))
        # a batch without a duplicate key (the usual case) skips the duplicate rule, which
        # numbers the rows of every key
        duplicates = con.execute(duplicate_keys_sql(contract, "_incoming")).fetchone()[0] > 0
        con.execute(
            "create or replace temp table _checked as "
            "select * exclude (_reject_reason, _pre_reject), "
            "coalesce(_pre_reject, _reject_reason) as _reject_reason from ("
            + check_sql(contract, "_incoming", list(frame.columns), duplicates)
            + ")"
        )
        columns = ", ".join(quoted)
        con.execute(
            f"insert into raw.{contract.raw_table} ({columns}{', ' if columns else ''}"
            "_load_id, _source, _source_location, _source_row, _loaded_at) "
            f"select {columns}{', ' if columns else ''}?, ?, ?, _source_row, ?::timestamptz "
            "from _checked where _reject_reason is null order by _source_row",
            [load_id, contract.source, source_location, started_at],
        )
        con.execute(
            "insert into raw._quarantine "
            "select ?, ?, ?, ?, _source_row, _reject_reason, "
            f"to_json(struct_pack({record})), ? "
            "from _checked where _reject_reason is not null",
            [load_id, contract.source, contract.name, source_location, started_at],
        )
        loaded, quarantined = con.execute(
            "select count(*) filter (where _reject_reason is null), "
            "count(*) filter (where _reject_reason is not null) from _checked"
        ).fetchone()
        result = LoadResult(
            load_id, contract.source, contract.name, source_location,
            staged.height, loaded, quarantined,
        )  # fmt: skip
        if result.rows_read != loaded + quarantined:
            raise RuntimeError(f"row accounting does not reconcile for {source_location}: {result}")
        con.execute(
            "insert into raw._loads values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [load_id, run_id, contract.source, contract.name, source_location,
             result.rows_read, loaded, quarantined, unexpected, started_at, datetime.now(UTC)],
        )  # fmt: skip
        for update in state:
            con.execute(update.sql, [p if p is not ... else load_id for p in update.params])
        con.execute("drop table _checked")
        con.execute("commit")
    except Exception as error:
        _roll_back(con, error)
        raise
    finally:
        con.unregister("_incoming")
    log.info(
        "%s.%s from %s: read %d, loaded %d (%d anonymised: erased people), quarantined %d",
        contract.source, contract.name, source_location, result.rows_read, loaded, erased,
        quarantined,
    )  # fmt: skip
    return result


def quarantine_file(
    con: duckdb.DuckDBPyConnection,
    contract: ObjectContract,
    source_location: str,
    file_name: str,
    reason: str,
    run_id: str | None = None,
    state: list[StateUpdate] | tuple[StateUpdate, ...] = (),
) -> LoadResult:
    """Record a file that cannot be read as a whole, in one transaction with `state`: one
    `raw._quarantine` row (source row 0, `reason`, the record `{"file": file_name}`: never the
    file's contents) and a `raw._loads` row of 1 row read, 0 loaded, 1 quarantined."""
    started_at = datetime.now(UTC)
    load_id = uuid.uuid4().hex
    result = LoadResult(load_id, contract.source, contract.name, source_location, 1, 0, 1)
    ensure_raw_schema(con)
    try:
        con.execute("begin transaction")
        con.execute(
            "insert into raw._quarantine values (?, ?, ?, ?, 0, ?, ?, ?)",
            [load_id, contract.source, contract.name, source_location, reason,
             json.dumps({"file": file_name}, ensure_ascii=False), started_at],
        )  # fmt: skip
        con.execute(
            "insert into raw._loads values (?, ?, ?, ?, ?, 1, 0, 1, [], ?, ?)",
            [load_id, run_id, contract.source, contract.name, source_location,
             started_at, datetime.now(UTC)],
        )  # fmt: skip
        for update in state:
            con.execute(update.sql, [p if p is not ... else load_id for p in update.params])
        con.execute("commit")
    except Exception as error:
        _roll_back(con, error)
        raise
    log.warning("%s.%s: quarantined the whole file: %s", contract.source, contract.name, reason)
    return result
