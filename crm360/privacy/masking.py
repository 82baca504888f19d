"""The analysts' copy with personal data masked (the default; `CRM360_PUBLISHED_PII=plain`
publishes it unmasked).

Every table is copied with its personal columns (crm360.privacy.columns) replaced: text by a
keyed hash, `h:` and 16 hexadecimal characters of SHA-256 over the privacy key and the value
in lower case, so that the same e-mail is the same hash in every table (counts, joins and
duplicates still work) but cannot be looked up; other types (birth dates) by NULL. Raw columns
a contract does not know are masked too (their content is unknown). The erasure hashes
(`privacy.erased_keys`) are left out. The copy is written table by table into a new file, so
no page of it ever held the plain values.
"""

from __future__ import annotations

from pathlib import Path

from crm360.privacy.columns import PII_COLUMNS, raw_personal
from crm360.privacy.columns import quote as _quote
from ingestion.contracts import all_contracts

MASKED_PREFIX = "h:"
_LEFT_OUT = {("privacy", "erased_keys")}


def _mask_sql(text: str) -> str:
    """SQL: the masked form of a text expression (NULL stays NULL)."""
    return (
        f"case when {text} is null then null else '{MASKED_PREFIX}' || "
        f"left(sha256($key || ':mask:' || lower(trim({text}))), 16) end"
    )


def _personal(schema: str, table: str, column: str, raw_contracts: dict) -> bool:
    if schema == "raw":
        contract = raw_contracts.get(table)
        return contract is not None and raw_personal(contract, column)
    return column in PII_COLUMNS


def _masked_record(column: str, raw_contracts: dict) -> str:
    """SQL: a quarantined row's record (JSON) with every personal field masked: the reason a
    row was refused stays readable, its contact data does not."""
    names = sorted({
        name for contract in raw_contracts.values()
        for name, spec in contract.columns.items() if spec.pii
    })  # fmt: skip
    fields = [f"'{name}', {_mask_sql(f'({column} ->> {name!r})')}" for name in names]
    patch = ", ".join(fields)
    return f"json_merge_patch({column}, json_object({patch}))"


def write_masked_copy(source: Path, target: Path, key: str, memory: str) -> dict:
    """Write `target` (a new file) as `source` with personal columns masked; counts."""
    import duckdb

    raw_contracts = {contract.raw_table: contract for contract in all_contracts()}
    con = duckdb.connect()
    try:
        con.execute("set block_allocator_memory = $1", [memory])
        con.execute("attach $path as src (read_only)", {"path": str(source)})
        con.execute("attach $path as dst", {"path": str(target)})
        con.execute("copy from database src to dst (schema)")
        tables = con.execute(
            "select schema_name, table_name from duckdb_tables() "
            "where database_name = 'src' and not internal order by all"
        ).fetchall()
        masked = 0
        for schema, table in tables:
            if (schema, table) in _LEFT_OUT:
                continue
            columns = con.execute(
                "select column_name, data_type from duckdb_columns() "
                "where database_name = 'src' and schema_name = ? and table_name = ? "
                "order by column_index",
                [schema, table],
            ).fetchall()
            expressions = []
            for name, kind in columns:
                column = _quote(name)
                if not _personal(schema, table, name, raw_contracts):
                    expressions.append(column)
                    continue
                masked += 1
                if kind == "VARCHAR":
                    expressions.append(_mask_sql(column))
                else:
                    expressions.append(f"cast(null as {kind})")
            if (schema, table) == ("raw", "_quarantine"):
                expressions = [_masked_record(_quote(name), raw_contracts) if name == "record"
                               else _quote(name) for name, _ in columns]  # fmt: skip
            relation = f"{_quote(schema)}.{_quote(table)}"
            con.execute(
                f"insert into dst.{relation} select {', '.join(expressions)} from src.{relation}",
                {"key": key} if any("$key" in e for e in expressions) else None,
            )
        con.execute("detach dst")
    finally:
        con.close()
    return {"tables": len(tables), "masked_columns": masked}
