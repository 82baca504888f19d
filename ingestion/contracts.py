"""Source contracts: what each source object must look like, read from `contracts/<source>.yml`.

A contract names the object's columns with their type, whether they are required, allowed
values and bounds, and the primary key. `check_sql` turns a contract into one SQL expression per
row that says why the row breaks it (or NULL when it is fine), so that DuckDB, the engine that
staging casts with, decides what is loadable.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from crm360.configfile import Strict, file_version, load_model

CONTRACT_DIR = Path(__file__).parent / "contracts"

# How a contract type is checked: DuckDB must be able to cast the raw value to the type staging
# casts it to (dbt_project/models/staging), so that a row the contract lets in cannot fail a
# staging build. Integer types also take only whole numbers: DuckDB rounds '12.5' to 13.
_CAST_TYPES = {
    "varchar": None,
    "integer": "integer",
    "bigint": "bigint",
    "decimal": "decimal(18, 2)",
    "boolean": "boolean",
    "date": "date",
    "timestamp": "timestamptz",
}
# what each numeric staging type holds, for the reason of a value out of its range
_RANGES = {
    "integer": "-2147483648 to 2147483647",
    "bigint": "-9223372036854775808 to 9223372036854775807",
    "decimal(18, 2)": "less than 10^16 in absolute value",
}
# a whole number as written: digits, optionally signed, optionally with a zero fraction (12.0,
# as a JSON float reads)
_WHOLE_NUMBER = r"[+-]?[0-9]+(\.0*)?"


# formats read from files under the source folder (the others: a database, an HTTP API)
FILE_FORMATS = frozenset({"csv", "jsonl", "parquet"})


def reads_files(contracts: dict[str, ObjectContract]) -> bool:
    """Whether a source (its objects' contracts) reads files from the source folder."""
    return any(c.format in FILE_FORMATS for c in contracts.values())


class ContractError(ValueError):
    """A source object cannot be loaded at all (missing file, missing required column...).
    Retrying cannot help: the data or its configuration must change."""

    permanent = True


@dataclass(frozen=True)
class Column:
    name: str
    type: str = "varchar"
    required: bool = False
    pii: bool = False
    money: bool = False
    allowed: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None
    description: str = ""


@dataclass(frozen=True)
class ObjectContract:
    source: str
    name: str
    raw_table: str
    format: str
    primary_key: tuple[str, ...]
    columns: dict[str, Column]
    table: str | None = None
    watermark: str | None = None
    encodings: tuple[str, ...] = ("utf-8",)
    description: str = ""

    @property
    def required_columns(self) -> list[str]:
        return [c.name for c in self.columns.values() if c.required or c.name in self.primary_key]


def contract_sources(contract_dir: Path = CONTRACT_DIR) -> list[str]:
    """Every source that has a contract file."""
    return sorted(p.stem for p in contract_dir.glob("*.yml"))


ColumnType = Literal["varchar", "integer", "bigint", "decimal", "boolean", "date", "timestamp"]


class ColumnSpec(Strict):
    type: ColumnType = "varchar"
    required: bool = False
    pii: bool = False
    money: bool = False
    allowed: list[str | int | float | bool] | None = None
    min: float | None = None
    max: float | None = None
    description: str = ""


class ObjectSpec(Strict):
    raw_table: str
    format: Literal["csv", "jsonl", "parquet", "database", "api"]
    primary_key: list[str] = Field(min_length=1)
    columns: dict[str, ColumnSpec]
    table: str | None = None
    watermark: str | None = None
    encodings: list[str] = ["utf-8"]
    description: str = ""

    @model_validator(mode="after")
    def _keys_are_columns(self) -> ObjectSpec:
        for key in [*self.primary_key, *([self.watermark] if self.watermark else [])]:
            if key not in self.columns:
                raise ValueError(f"{key!r} (primary key or watermark) is not one of its columns")
        return self


class ContractSpec(Strict):
    source: str
    description: str = ""
    # what the marts lose when the source is absent (docs and the run report)
    feeds: list[str] = []
    objects: dict[str, ObjectSpec] = Field(min_length=1)


def load_contract(source: str, contract_dir: Path = CONTRACT_DIR) -> dict[str, ObjectContract]:
    """Read `<source>.yml` and return its objects by name (ConfigError when it is invalid)."""
    path = contract_dir / f"{source}.yml"
    return _load_contract(path, file_version(path))


def all_contracts(contract_dir: Path = CONTRACT_DIR) -> list[ObjectContract]:
    """Every object contract of every source."""
    return [
        contract
        for source in contract_sources(contract_dir)
        for contract in load_contract(source, contract_dir).values()
    ]


def contract_feeds(source: str, contract_dir: Path = CONTRACT_DIR) -> list[str]:
    """What the marts lose without this source, as its contract says."""
    path = contract_dir / f"{source}.yml"
    return list(_read_spec(path, file_version(path)).feeds)


@cache
def _read_spec(path: Path, _version: tuple[int, int]) -> ContractSpec:
    return load_model(path, ContractSpec, "source contract")


@cache
def _load_contract(path: Path, version: tuple[int, int]) -> dict[str, ObjectContract]:
    spec = _read_spec(path, version)
    objects = {}
    for name, obj in spec.objects.items():
        columns = {
            col_name: Column(
                name=col_name,
                type=col.type,
                required=col.required,
                pii=col.pii,
                money=col.money,
                allowed=tuple(_allowed_text(v) for v in col.allowed) if col.allowed else None,
                min=col.min,
                max=col.max,
                description=col.description,
            )
            for col_name, col in obj.columns.items()
        }
        objects[name] = ObjectContract(
            source=spec.source,
            name=name,
            raw_table=obj.raw_table,
            format=obj.format,
            primary_key=tuple(obj.primary_key),
            columns=columns,
            table=obj.table,
            watermark=obj.watermark,
            encodings=tuple(obj.encodings),
            description=obj.description,
        )
    return objects


def _allowed_text(value: str | int | float | bool) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _column_checks(col: Column) -> list[str]:
    """SQL `case` branches, each yielding a reason when the value breaks the column's rules."""
    ref = _quote(col.name)
    text = f"nullif(trim(cast({ref} as varchar)), '')"
    checks = []
    if col.required:
        checks.append(f"when {text} is null then 'missing required value in {col.name}'")
    cast_type = _CAST_TYPES[col.type]
    if cast_type in _RANGES:
        checks += _number_checks(col, text, cast_type)
    elif cast_type:
        checks.append(
            f"when {text} is not null and try_cast({text} as {cast_type}) is null "
            f"then 'unparsable {col.type} in {col.name}: ' || {text}"
        )
    if col.allowed is not None:
        allowed = ", ".join(_literal(v) for v in col.allowed)
        checks.append(
            f"when {text} is not null and {text} not in ({allowed}) "
            f"then 'unknown value in {col.name}: ' || {text}"
        )
    if col.min is not None:
        checks.append(
            f"when try_cast({text} as double) < {float(col.min)} "
            f"then 'value below {col.min:g} in {col.name}: ' || {text}"
        )
    if col.max is not None:
        checks.append(
            f"when try_cast({text} as double) > {float(col.max)} "
            f"then 'value above {col.max:g} in {col.name}: ' || {text}"
        )
    return checks


def _number_checks(col: Column, text: str, cast_type: str) -> list[str]:
    """`case` branches for a numeric column: a number, whole for an integer type, that fits the
    type staging casts it to (reasons name the column and the value)."""
    number = f"try_cast({text} as double)"
    checks = [
        f"when {text} is not null and not coalesce(isfinite({number}), false) "
        f"then 'unparsable {col.type} in {col.name}: ' || {text}"
    ]
    if col.type in ("integer", "bigint"):
        checks += [
            f"when {text} is not null and {number} <> trunc({number}) "
            f"then 'not a whole number in {col.name}: ' || {text}",
            f"when {text} is not null and not regexp_full_match({text}, {_literal(_WHOLE_NUMBER)}) "
            f"then 'unparsable {col.type} in {col.name}: ' || {text}",
        ]
    checks.append(
        f"when {text} is not null and try_cast({text} as {cast_type}) is null "
        f"then 'out of range in {col.name} ({cast_type} holds {_RANGES[cast_type]}): ' || {text}"
    )
    return checks


def duplicate_keys_sql(contract: ObjectContract, relation: str) -> str:
    """SQL counting the primary-key values that occur more than once in `relation` (NULL keys
    count as one value, as check_sql's duplicate rule sees them)."""
    key = ", ".join(_quote(k) for k in contract.primary_key)
    return f"select count(*) from (select {key} from {relation} group by {key} having count(*) > 1)"


def check_sql(
    contract: ObjectContract, relation: str, present: list[str], duplicates: bool = True
) -> str:
    """SQL selecting every row of `relation` with `_reject_reason` (NULL when the row is valid).

    `relation` must carry a `_source_row` column (1-based position in the source). Duplicate
    primary keys keep their first occurrence and quarantine the others. `duplicates=False`
    leaves that rule out, for a relation known to hold no duplicate key (duplicate_keys_sql
    found none): the rule numbers the rows of every key, the costliest check of a large batch.
    """
    reasons = []
    for col in contract.columns.values():
        if col.name in present:
            branches = _column_checks(col)
            if branches:
                reasons.append("case " + " ".join(branches) + " end")
    if duplicates:
        key = ", ".join(_quote(k) for k in contract.primary_key)
        key_text = " || '/' || ".join(
            f"coalesce(cast({_quote(k)} as varchar), '')" for k in contract.primary_key
        )
        reasons.append(
            f"case when row_number() over (partition by {key} order by _source_row) > 1 "
            f"then 'duplicate primary key {'/'.join(contract.primary_key)}: ' || {key_text} end"
        )
    return (
        f"select *, nullif(concat_ws('; ', {', '.join(reasons) or 'null'}), '') "
        f"as _reject_reason from {relation}"
    )
