"""Audience definitions: one YAML file each under `activation/audiences/`, validated before any
run.

A definition names who it is for (name, description, owner), whom it selects (`where`: one
boolean SQL expression over the documented columns of `marts.audience_base`), where the files go
(`destinations`: a name and a format each), the share kept back as a control group, and contact
caps. Every problem found is reported with the file, the line and what is wrong.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, field_validator, model_validator

from crm360.configfile import ConfigError, Strict, load_model, raise_problems, read_yaml
from crm360.settings import PROJECT_ROOT

AUDIENCE_DIR = Path(__file__).parent / "audiences"
BASE_MODEL_YAML = (
    PROJECT_ROOT / "dbt_project" / "models" / "marts" / "activation" / "_activation__models.yml"
)
# functions a predicate may call: pure, row-level, no I/O
ALLOWED_FUNCTIONS = {
    "abs",
    "coalesce",
    "lower",
    "upper",
    "length",
    "round",
    "least",
    "greatest",
    "nullif",
    "date_diff",
    "datediff",
    "date_trunc",
    "year",
    "month",
    "day",
    "ifnull",
}


class AudienceDefinitionError(ConfigError):
    """An audience definition is malformed; the message names the file, line and problem."""


@dataclass(frozen=True)
class Destination:
    name: str
    format: str
    encoding: str = "utf-8"

    @property
    def file_stem(self) -> str:
        return self.name


@dataclass(frozen=True)
class Audience:
    name: str
    description: str
    owner: str
    channel: str
    where: str
    columns: tuple[str, ...]
    destinations: tuple[Destination, ...]
    control_group_percent: float
    max_contacts_7d: int | None
    max_contacts_30d: int | None
    path: Path
    definition_sha256: str
    referenced_columns: frozenset[str] = field(default_factory=frozenset)


def known_columns(model_yaml: Path = BASE_MODEL_YAML) -> frozenset[str]:
    """The documented columns of `marts.audience_base` (the model's YAML)."""
    spec = yaml.safe_load(model_yaml.read_text(encoding="utf-8"))
    model = next(m for m in spec["models"] if m["name"] == "audience_base")
    return frozenset(column["name"] for column in model["columns"])


def _parse_one(where: str):
    """(the parsed expression, None) or (None, the problem)."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ParseError

    if ";" in where:
        return None, "must be a single expression, without ';'"
    try:  # as a select list, a comma makes two expressions
        listed = sqlglot.parse_one(f"select {where}", read="duckdb")
        if isinstance(listed, exp.Select) and len(listed.expressions) > 1:
            return None, f"must be exactly one expression, found {len(listed.expressions)}"
    except ParseError:
        pass  # reported below
    try:
        parsed = [p for p in sqlglot.parse(where, read="duckdb") if p is not None]
    except ParseError as error:
        detail = error.errors[0]["description"] if error.errors else str(error)
        return None, f"is not valid SQL: {detail}"
    if len(parsed) != 1:
        return None, f"must be exactly one expression, found {len(parsed)}"
    return parsed[0], None


def _function_name(function) -> str:
    from sqlglot import exp

    if isinstance(function, exp.Anonymous):
        return str(function.this).lower()
    return (function.sql_name() or "").lower()


def _tree_problem(tree) -> str | None:
    """What makes a parsed predicate unsafe or not boolean, if anything."""
    from sqlglot import exp

    forbidden = (exp.Query, exp.Subquery, exp.DDL, exp.DML, exp.Command, exp.Star)
    for node in tree.walk():
        if isinstance(node, forbidden):
            return f"must not contain a statement or subquery ({node.key})"
    boolean_roots = (exp.Connector, exp.Not, exp.Predicate, exp.Column, exp.Boolean, exp.Paren)
    if not isinstance(tree, boolean_roots):
        return f"must be a boolean expression, got {tree.key}: {tree.sql()!r}"
    operators = (exp.Connector, exp.Predicate, exp.Cast, exp.Not, exp.Paren)
    for function in tree.find_all(exp.Func):
        name = _function_name(function)
        if not isinstance(function, operators) and name not in ALLOWED_FUNCTIONS:
            allowed = ", ".join(sorted(ALLOWED_FUNCTIONS))
            return f"function {name!r} is not allowed (allowed: {allowed})"
    return None


def validate_predicate(where: str, columns: frozenset[str]) -> tuple[frozenset[str], str | None]:
    """(columns used, problem or None) for an audience's `where`: exactly one boolean expression
    over known columns, with no statement, subquery, star or unlisted function."""
    from sqlglot import exp

    tree, problem = _parse_one(where)
    if problem:
        return frozenset(), problem
    problem = _tree_problem(tree)
    if problem:
        return frozenset(), problem
    used = set()
    for column in tree.find_all(exp.Column):
        if column.table:
            return frozenset(), f"column {column.sql()!r} must not be qualified"
        used.add(column.name.lower())
    unknown = sorted(used - columns)
    if unknown:
        return frozenset(), (
            f"unknown column(s) {', '.join(unknown)}; audiences may use the documented columns "
            f"of marts.audience_base"
        )
    return frozenset(used), None


_SAFE_NAME = r"^[a-z0-9][a-z0-9_-]*$"  # a file and folder name: no path, no dot, no space


class _DestinationSpec(Strict):
    name: str = Field(pattern=_SAFE_NAME)
    format: Literal["csv", "parquet", "google_customer_match", "meta_custom_audience"]
    encoding: Literal["utf-8", "cp932"] = "utf-8"

    @model_validator(mode="after")
    def _csv_encodings(self) -> _DestinationSpec:
        if self.encoding != "utf-8" and self.format != "csv":
            raise ValueError(f"encoding {self.encoding!r}: only csv files take another encoding")
        return self


class _CapsSpec(Strict):
    max_contacts_7d: int | None = Field(default=None, ge=0)
    max_contacts_30d: int | None = Field(default=None, ge=0)


class _AudienceSpec(Strict):
    name: str = Field(pattern=_SAFE_NAME)
    description: str
    owner: str
    channel: Literal["email", "ads"]
    where: str
    columns: list[str] = ["customer_id", "email"]
    destinations: list[_DestinationSpec] = Field(min_length=1)
    control_group_percent: float = Field(default=0, ge=0, lt=100)
    contact_caps: _CapsSpec = _CapsSpec()

    @field_validator("destinations")
    @classmethod
    def _unique(cls, destinations: list[_DestinationSpec]) -> list[_DestinationSpec]:
        names = [d.name for d in destinations]
        if len(set(names)) != len(names):
            raise ValueError("destination names must be unique")
        return destinations


def _problems(spec: _AudienceSpec, path: Path, columns: frozenset[str]):
    """What the schema cannot tell: the file name, the columns, the predicate."""
    problems = []
    if spec.name != path.stem:
        problems.append((["name"], f"{spec.name!r} must match the file name {path.stem!r}"))
    unknown = sorted(set(spec.columns) - columns)
    if unknown:
        problems.append((["columns"], f"unknown column(s): {', '.join(unknown)}"))
    used, problem = validate_predicate(spec.where.strip(), columns)
    if problem:
        problems.append((["where"], problem))
    return problems, used


def load_audience(path: Path, columns: frozenset[str] | None = None) -> Audience:
    """Read and validate one definition; raises AudienceDefinitionError naming file and line."""
    columns = known_columns() if columns is None else columns
    spec = load_model(path, _AudienceSpec, "audience definition", error=AudienceDefinitionError)
    data, node = read_yaml(path, "audience definition")
    problems, used = _problems(spec, path, columns)
    try:
        raise_problems(path, node, problems)
    except ConfigError as error:
        raise AudienceDefinitionError(str(error)) from None
    wanted = list(spec.columns)
    if "customer_id" not in wanted:
        wanted.insert(0, "customer_id")
    return Audience(
        name=spec.name,
        description=spec.description.strip(),
        owner=spec.owner,
        channel=spec.channel,
        where=spec.where.strip(),
        columns=tuple(wanted),
        destinations=tuple(Destination(d.name, d.format, d.encoding) for d in spec.destinations),
        control_group_percent=float(spec.control_group_percent),
        max_contacts_7d=spec.contact_caps.max_contacts_7d,
        max_contacts_30d=spec.contact_caps.max_contacts_30d,
        path=path,
        definition_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        referenced_columns=used,
    )


def load_audiences(directory: Path = AUDIENCE_DIR) -> list[Audience]:
    """Every definition of the folder, all validated first: one bad file stops the run before
    any export, with every problem listed."""
    columns = known_columns()
    audiences, problems = [], []
    for path in sorted(directory.glob("*.yml")):
        try:
            audiences.append(load_audience(path, columns))
        except AudienceDefinitionError as error:
            problems.append(str(error))
    if problems:
        raise AudienceDefinitionError("\n".join(problems))
    return audiences


def main(argv: list[str] | None = None) -> int:
    """`python -m activation.audiences [FOLDER]`: validate every definition; exit 1 on error."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    folder = Path(args[0]) if args else AUDIENCE_DIR
    try:
        audiences = load_audiences(folder)
    except AudienceDefinitionError as error:
        print(error, file=sys.stderr)
        return 1
    for audience in audiences:
        print(f"ok  {audience.name}: {audience.where}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
