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
        return function.name.lower()
    return (function.sql_name() or "").lower()


def _tree_problem(tree) -> str | None:
    """What makes a parsed predicate unsafe or not boolean, if anything.

    Every function node counts, whatever its syntax: a call (`lower(email)`), a method call
    (`email.lower()`), or a function sqlglot models as a predicate (`regexp_matches(...)`). Only
    `and`, `or` and casts are operators rather than calls."""
    from sqlglot import exp

    forbidden = (exp.Query, exp.Subquery, exp.DDL, exp.DML, exp.Command, exp.Star)
    for node in tree.walk():
        if isinstance(node, forbidden):
            return f"must not contain a statement or subquery ({node.key})"
        if isinstance(node, (exp.Placeholder, exp.Parameter, exp.Lambda)):
            return f"must not contain a parameter or lambda ({node.sql(dialect='duckdb')!r})"
    boolean_roots = (exp.Connector, exp.Not, exp.Predicate, exp.Column, exp.Boolean, exp.Paren)
    if not isinstance(tree, boolean_roots):
        return f"must be a boolean expression, got {tree.key}: {tree.sql()!r}"
    operators = (exp.And, exp.Or, exp.Cast, exp.TryCast)
    for function in tree.find_all(exp.Func):
        name = _function_name(function)
        if type(function) not in operators and name not in ALLOWED_FUNCTIONS:
            allowed = ", ".join(sorted(ALLOWED_FUNCTIONS))
            return (
                f"function {name!r} is not allowed: {function.sql(dialect='duckdb')} "
                f"(allowed: {allowed})"
            )
    return None


def _referenced_columns(tree) -> tuple[set[str], str | None]:
    """(the column names a predicate reads, problem or None).

    sqlglot does not wrap every column in a Column node: the receiver of a method call
    (`email.lower()`) or an argument of some functions (`lower(email).upper()`) is a bare
    Identifier. So every identifier counts as a column, except a function's own name."""
    from sqlglot import exp

    used = set()
    for node in tree.walk():
        if isinstance(node, exp.Column) and node.table:
            return used, f"column {node.sql()!r} must not be qualified"
        if isinstance(node, exp.Dot) and not isinstance(node.expression, exp.Func):
            return used, f"{node.sql()!r} must not be qualified or read a field"
        function_name = node.arg_key == "this" and isinstance(node.parent, exp.Anonymous)
        if isinstance(node, exp.Identifier) and not function_name:
            used.add(node.name.lower())
    return used, None


def parse_predicate(where: str):
    """The parsed `where` of a definition; raises AudienceDefinitionError when it is not one
    safe boolean expression. Columns are not checked here (see validate_predicate)."""
    tree, problem = _parse_one(where)
    problem = problem or _tree_problem(tree)
    if problem:
        raise AudienceDefinitionError(f"where {problem}: {where!r}")
    return tree


def predicate_sql(where: str) -> str:
    """The `where` as DuckDB SQL generated from its parsed tree, never the raw text: comments
    are dropped, so a trailing `-- ...` cannot swallow the rest of the export query."""
    return parse_predicate(where).sql(dialect="duckdb", comments=False)


def validate_predicate(where: str, columns: frozenset[str]) -> tuple[frozenset[str], str | None]:
    """(columns used, problem or None) for an audience's `where`: exactly one boolean expression
    over known columns, with no statement, subquery, star or unlisted function."""
    tree, problem = _parse_one(where)
    if problem:
        return frozenset(), problem
    problem = _tree_problem(tree)
    if problem:
        return frozenset(), problem
    used, problem = _referenced_columns(tree)
    if problem:
        return frozenset(), problem
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
