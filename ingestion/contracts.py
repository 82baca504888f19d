"""Source contracts: what each source object must look like, read from `contracts/<source>.yml`.

A contract names the object's columns with their type, whether they are required, allowed
values and bounds, and the primary key. `check_sql` turns a contract into one SQL expression per
row that says why the row breaks it (or NULL when it is fine), so that DuckDB, the engine that
staging casts with, decides what is loadable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

CONTRACT_DIR = Path(__file__).parent / "contracts"

# How a contract type is checked: DuckDB must be able to cast the raw value to this type.
_CAST_TYPES = {
    "varchar": None,
    "integer": "bigint",
    "decimal": "decimal(18, 4)",
    "boolean": "boolean",
    "date": "date",
    "timestamp": "timestamptz",
}


class ContractError(ValueError):
    """A source object cannot be loaded at all (missing file, missing required column...)."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str = "varchar"
    required: bool = False
    pii: bool = False
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


def load_contract(source: str, contract_dir: Path = CONTRACT_DIR) -> dict[str, ObjectContract]:
    """Read `<source>.yml` and return its objects by name."""
    path = contract_dir / f"{source}.yml"
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    objects = {}
    for name, obj in spec["objects"].items():
        columns = {}
        for col_name, col in obj["columns"].items():
            col_type = col.get("type", "varchar")
            if col_type not in _CAST_TYPES:
                raise ContractError(
                    f"{path}: column {name}.{col_name} has unknown type {col_type!r}"
                )
            allowed = tuple(str(v) for v in col["allowed"]) if "allowed" in col else None
            columns[col_name] = Column(
                name=col_name,
                type=col_type,
                required=bool(col.get("required", False)),
                pii=bool(col.get("pii", False)),
                allowed=allowed,
                min=col.get("min"),
                max=col.get("max"),
                description=col.get("description", ""),
            )
        objects[name] = ObjectContract(
            source=spec["source"],
            name=name,
            raw_table=obj["raw_table"],
            format=obj["format"],
            primary_key=tuple(obj["primary_key"]),
            columns=columns,
            table=obj.get("table"),
            watermark=obj.get("watermark"),
            encodings=tuple(obj.get("encodings", ["utf-8"])),
            description=obj.get("description", ""),
        )
    return objects


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
    if cast_type:
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
