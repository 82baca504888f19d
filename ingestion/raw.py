"""Writing one source object into the DuckDB `raw` schema, with its audit row and quarantine.

A load is one transaction: the object's raw table is replaced by the rows that pass the
contract, rejected rows go to `raw._quarantine` with their reason and original values, and
`raw._loads` gets a row whose counts reconcile (rows read = rows loaded + rows quarantined).
A failure rolls everything back, so nothing half-loaded is left behind.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ingestion.contracts import ContractError, ObjectContract, check_sql

if TYPE_CHECKING:
    import duckdb
    import polars as pl

log = logging.getLogger(__name__)

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


def ensure_raw_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(_META_DDL)


def load_object(
    con: duckdb.DuckDBPyConnection,
    contract: ObjectContract,
    frame: pl.DataFrame,
    source_location: str,
    run_id: str | None = None,
) -> LoadResult:
    """Check `frame` against `contract` and replace the object's raw table in one transaction."""
    missing = [c for c in contract.required_columns if c not in frame.columns]
    if missing:
        raise ContractError(
            f"{source_location}: required column(s) {', '.join(missing)} missing "
            f"from {contract.source}.{contract.name} (found: {', '.join(frame.columns)})"
        )
    unexpected = [c for c in frame.columns if c not in contract.columns]
    if unexpected:
        log.warning("%s: unexpected column(s) kept: %s", source_location, ", ".join(unexpected))

    started_at = datetime.now(UTC)
    load_id = uuid.uuid4().hex
    staged = frame.with_row_index("_source_row", offset=1)
    ensure_raw_schema(con)
    con.register("_incoming", staged)
    quoted = ['"' + c.replace('"', '""') + '"' for c in frame.columns]
    data_columns = ", ".join(quoted)
    record = ", ".join(f"{q} := {q}" for q in quoted)
    try:
        con.execute("begin transaction")
        con.execute(
            "create or replace temp table _checked as "
            + check_sql(contract, "_incoming", list(frame.columns))
        )
        con.execute(
            f"create or replace table raw.{contract.raw_table} as "
            f"select {data_columns}, ? as _load_id, ? as _source, ? as _source_location, "
            f"_source_row, ?::timestamptz as _loaded_at "
            f"from _checked where _reject_reason is null order by _source_row",
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
            load_id,
            contract.source,
            contract.name,
            source_location,
            staged.height,
            loaded,
            quarantined,
        )
        if result.rows_read != loaded + quarantined:
            raise RuntimeError(f"row accounting does not reconcile for {source_location}: {result}")
        con.execute(
            "insert into raw._loads values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                load_id,
                run_id,
                contract.source,
                contract.name,
                source_location,
                result.rows_read,
                loaded,
                quarantined,
                unexpected,
                started_at,
                datetime.now(UTC),
            ],
        )
        con.execute("drop table _checked")
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    finally:
        con.unregister("_incoming")
    log.info(
        "%s.%s from %s: read %d, loaded %d, quarantined %d",
        contract.source,
        contract.name,
        source_location,
        result.rows_read,
        loaded,
        quarantined,
    )
    return result
