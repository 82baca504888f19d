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

import yaml

from crm360.settings import PROJECT_ROOT

AUDIENCE_DIR = Path(__file__).parent / "audiences"
BASE_MODEL_YAML = (
    PROJECT_ROOT / "dbt_project" / "models" / "marts" / "activation" / "_activation__models.yml"
)
FORMATS = ("csv", "parquet", "google_customer_match", "meta_custom_audience")
ENCODINGS = ("utf-8", "cp932")
CHANNELS = ("email", "ads")
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
REQUIRED_KEYS = ("name", "description", "owner", "channel", "where", "destinations")


class AudienceDefinitionError(ValueError):
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


def _key_lines(text: str) -> dict[str, int]:
    """1-based line of each top-level key (of the text, for a block scalar) in a YAML document."""
    node = yaml.compose(text)
    if not isinstance(node, yaml.MappingNode):
        return {}
    lines = {}
    for key, value in node.value:
        lines[str(key.value)] = key.start_mark.line + 1
        if isinstance(value, yaml.ScalarNode) and value.style in ("|", ">"):
            lines[str(key.value)] += 1  # a block scalar's text starts on the next line
    return lines


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


class _Problem(Exception):
    """A problem of one key of a definition (the caller adds file and line)."""

    def __init__(self, key: str, problem: str):
        super().__init__(problem)
        self.key = key


def _destinations(raw) -> tuple[Destination, ...]:
    if not isinstance(raw, list) or not raw:
        raise _Problem("destinations", "destinations must be a non-empty list")
    destinations = []
    for item in raw:
        if not isinstance(item, dict) or "name" not in item or "format" not in item:
            raise _Problem("destinations", "each destination needs a name and a format")
        if item["format"] not in FORMATS:
            known = ", ".join(FORMATS)
            raise _Problem("destinations", f"unknown format {item['format']!r} (known: {known})")
        encoding = item.get("encoding", "utf-8")
        if encoding not in ENCODINGS or (encoding != "utf-8" and item["format"] != "csv"):
            raise _Problem(
                "destinations",
                f"encoding {encoding!r}: csv takes {' or '.join(ENCODINGS)}; other formats utf-8",
            )
        destinations.append(Destination(str(item["name"]), item["format"], encoding))
    names = [d.name for d in destinations]
    if len(set(names)) != len(names):
        raise _Problem("destinations", "destination names must be unique")
    return tuple(destinations)


def _settings(spec: dict, columns: frozenset[str]) -> dict:
    """The checked keys of a definition besides `where` and `destinations`."""
    if spec["channel"] not in CHANNELS:
        raise _Problem(
            "channel", f"channel must be one of {', '.join(CHANNELS)}, got {spec['channel']!r}"
        )
    wanted = list(spec.get("columns") or ["customer_id", "email"])
    unknown = sorted(set(wanted) - columns)
    if unknown:
        raise _Problem("columns", f"unknown column(s) in columns: {', '.join(unknown)}")
    if "customer_id" not in wanted:
        wanted.insert(0, "customer_id")
    percent = spec.get("control_group_percent", 0)
    if not isinstance(percent, (int, float)) or not 0 <= percent < 100:
        raise _Problem(
            "control_group_percent",
            f"control_group_percent must be a number in [0, 100), got {percent!r}",
        )
    caps = spec.get("contact_caps") or {}
    for key, value in caps.items():
        if key not in ("max_contacts_7d", "max_contacts_30d") or not (
            isinstance(value, int) and value >= 0
        ):
            raise _Problem(
                "contact_caps",
                f"contact_caps takes max_contacts_7d / max_contacts_30d as counts, got {key}",
            )
    return {
        "columns": tuple(wanted),
        "control_group_percent": float(percent),
        "max_contacts_7d": caps.get("max_contacts_7d"),
        "max_contacts_30d": caps.get("max_contacts_30d"),
    }


def load_audience(path: Path, columns: frozenset[str] | None = None) -> Audience:
    """Read and validate one definition; raises AudienceDefinitionError naming file and line."""
    columns = known_columns() if columns is None else columns
    text = path.read_text(encoding="utf-8")

    def fail(line: int | None, problem: str) -> AudienceDefinitionError:
        where = f"{path}:{line}" if line else str(path)
        return AudienceDefinitionError(f"{where}: {problem}")

    try:
        spec = yaml.safe_load(text)
        lines = _key_lines(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        raise fail(mark.line + 1 if mark else None, f"not valid YAML: {error}") from error
    if not isinstance(spec, dict):
        raise fail(1, "must be a mapping of keys (name, description, owner, ...)")
    missing = [key for key in REQUIRED_KEYS if key not in spec]
    if missing:
        raise fail(1, f"missing key(s): {', '.join(missing)}")
    if spec["name"] != path.stem:
        raise fail(
            lines.get("name"), f"name {spec['name']!r} must match the file name {path.stem!r}"
        )
    where = str(spec["where"]).strip()
    used, problem = validate_predicate(where, columns)
    if problem:
        raise fail(lines.get("where"), f"where {problem}")
    try:
        settings = _settings(spec, columns)
        destinations = _destinations(spec["destinations"])
    except _Problem as problem:
        raise fail(lines.get(problem.key), str(problem)) from None
    return Audience(
        name=spec["name"],
        description=str(spec["description"]).strip(),
        owner=str(spec["owner"]),
        channel=spec["channel"],
        where=where,
        destinations=destinations,
        path=path,
        definition_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        referenced_columns=used,
        **settings,
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
