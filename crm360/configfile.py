"""Reading a YAML configuration file against a pydantic schema, with errors a person can act on.

Every configuration file of the project (source contracts, the sources config, identity, quality,
audiences) is read through `load_model`: unknown keys, wrong types and missing keys are reported
together, each with the file, the line and the key's path, before anything runs. A misspelled
key (`requried: true`) is an error, never a silently ignored setting.
"""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A configuration file is missing, unreadable or invalid. Retrying cannot help."""

    permanent = True


class Strict(BaseModel):
    """Base of every configuration schema: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def file_version(path: Path) -> tuple[int, int]:
    """(modification time, size) of a file, (0, 0) when absent: a cache key that changes when
    the file does."""
    try:
        stat = path.stat()
    except OSError:
        return 0, 0
    return stat.st_mtime_ns, stat.st_size


def read_yaml(path: Path, what: str, hint: str = "") -> tuple[Any, yaml.Node | None]:
    """The parsed YAML of `path` and its node tree (for line numbers); ConfigError when the
    file is missing or is not YAML."""
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}" + (f" ({hint})" if hint else ""))
    text = path.read_text(encoding="utf-8")
    try:
        return yaml.safe_load(text), yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}{where}: not valid YAML: {problem}") from exc


def load_model(
    path: Path, model: type[M], what: str, hint: str = "", error: type[ConfigError] = ConfigError
) -> M:
    """Read `path` and validate it as `model`; one ConfigError (or the given subclass) listing
    every problem."""
    try:
        data, node = read_yaml(path, what, hint)
    except ConfigError as exc:
        raise error(str(exc)) from None
    return validate(data, node, model, path, error)


def validate(
    data: Any,
    node: yaml.Node | None,
    model: type[M],
    path: Path | str,
    error: type[ConfigError] = ConfigError,
) -> M:
    """`data` (read from `path`, `node` its YAML tree) as `model`, or one ConfigError."""
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as exc:
        problems = [_describe(item, node, model) for item in exc.errors()]
        raise error(
            f"{path}: {len(problems)} problem(s):\n" + "\n".join(f"  - {p}" for p in problems)
        ) from None


def _describe(error: dict, node: yaml.Node | None, model: type[BaseModel]) -> str:
    loc = [part for part in error["loc"] if not _is_internal(part)]
    line, shown = locate(node, loc)
    where = f"line {line}: " if line else ""
    key = ".".join(str(part) for part in shown) or "(top level)"
    if error["type"] == "extra_forbidden":
        known = _known_keys(model, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        fix = f"did you mean {close[0]!r}?" if close else "remove it"
        if error.get("input") is None and "description" in known:
            fix = "a comma inside {...} starts a new key: put the text in quotes"
        listed = f" (known keys: {', '.join(known)})" if known else ""
        return f"{where}{key}: unknown key; {fix}{listed}"
    if error["type"] == "missing":
        return f"{where}{key}: required key is missing"
    message = error["msg"].removeprefix("Value error, ")
    value = error.get("input")
    shown_value = isinstance(value, str | int | float | bool) and repr(value) not in message
    return f"{where}{key}: {message}" + (f" (got {value!r})" if shown_value else "")


def raise_problems(path: Path, node: yaml.Node | None, problems: list[tuple[list, str]]) -> None:
    """One ConfigError for problems found outside the schema: (key path, message) pairs."""
    if problems:
        lines = []
        for loc, message in problems:
            line, shown = locate(node, loc)
            where = f"line {line}: " if line else ""
            lines.append(f"  - {where}{'.'.join(str(part) for part in shown)}: {message}")
        raise ConfigError(f"{path}: {len(lines)} problem(s):\n" + "\n".join(lines))


def _is_internal(part: Any) -> bool:
    """pydantic's own steps in a location (a union member's name, a validator's tag)."""
    return isinstance(part, str) and (part.startswith("function-") or "[" in part)


def locate(node: yaml.Node | None, loc: list) -> tuple[int | None, list]:
    """(line, key path as written in the file) of `loc`: the line of the deepest key found; a
    level the schema adds (a source's `objects`) is left out of the path."""
    if node is None:  # data given as a mapping, not read from a file
        return None, list(loc)
    line = node.start_mark.line + 1
    shown = []
    for position, part in enumerate(loc):
        found = _child(node, part)
        if found is None:
            if position == len(loc) - 1:
                shown.append(part)  # a missing key
            continue
        key, node = found
        line = key.start_mark.line + 1
        if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
            line += 1  # a block scalar's text starts on the next line
        shown.append(part)
    return line, shown


def _child(node: yaml.Node | None, part: Any) -> tuple[yaml.Node, yaml.Node] | None:
    """(key node, value node) of `part` under `node` (for a list item, the item twice)."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == str(part):
                return key, value
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return node.value[part], node.value[part]
    return None


def _known_keys(model: Any, loc: list) -> list[str]:
    """The keys the schema accepts at `loc` (for an unknown-key message)."""
    current = model
    for part in loc:
        current = _step(current, part)
        if current is None:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or name for name, f in current.model_fields.items()]
    return []


def _unwrap(annotation: Any) -> Any:
    """The model inside Optional[...] / A | None."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        models = [a for a in typing.get_args(annotation) if a is not type(None)]
        return models[0] if models else annotation
    return annotation


def _step(annotation: Any, part: Any) -> Any:
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = annotation.model_fields.get(str(part))
        return field.annotation if field is not None else None
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is dict and len(args) == 2:
        return args[1]
    if origin in (list, tuple) and args:
        return args[0]
    return None
