"""The sources configuration (`config/sources.yml`): which source systems a company has, where
their data lives and how its shape maps onto the contracts (`ingestion/contracts/*.yml`).

The file is validated as a whole before anything is loaded (`load_sources_config`): unknown keys,
unknown sources, objects or contract columns, a missing `files` pattern, an unsupported database
URL, an unknown time zone or encoding are reported together, each with its line. A source that
is not in the file, or has `enabled: false`, is skipped: its raw tables exist and are empty.
"""

from __future__ import annotations

import codecs
import os
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from crm360.configfile import (
    ConfigError,
    Strict,
    file_version,
    raise_problems,
    read_yaml,
    validate,
)
from crm360.settings import PROJECT_ROOT
from ingestion.contracts import FILE_FORMATS

__all__ = ["ConfigError", "ObjectConfig", "SourceConfig", "load_sources_config", "resolve_url",
           "source_config", "sources_config_path"]  # fmt: skip

# Decimal places of a currency's minor unit (ISO 4217), for amounts given in minor units.
MINOR_UNITS = {"JPY": 0, "KRW": 0, "USD": 2, "EUR": 2, "GBP": 2, "CNY": 2, "TWD": 2, "HKD": 2,
               "SGD": 2, "AUD": 2, "CAD": 2, "CHF": 2, "THB": 2}  # fmt: skip

_DATABASE_SCHEMES = ("sqlite:///", "postgresql://", "postgres://")


class ObjectConfig(Strict):
    """Where one source object's data is and how its columns and values map to the contract."""

    enabled: bool = True
    files: str | None = None
    table: str | None = None
    query: str | None = None
    encoding: str | list[str] | None = None
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    # source column name -> contract column
    columns: dict[str, str] = {}
    # contract column -> {value as the source writes it: value the contract expects}
    values: dict[str, dict[str, str]] = {}
    # contract column (date or timestamp) -> strptime format(s), tried in order
    formats: dict[str, str | list[str]] = {}

    @field_validator("values", mode="before")
    @classmethod
    def _values_as_text(cls, value: Any) -> Any:
        # YAML reads yes/no, 1/0 and true/false as booleans and numbers: the source wrote text
        if isinstance(value, dict):
            return {
                column: {_as_text(k): _as_text(v) for k, v in (mapping or {}).items()}
                if isinstance(mapping, dict) else mapping
                for column, mapping in value.items()
            }  # fmt: skip
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str | list[str] | None) -> str | list[str] | None:
        for encoding in [value] if isinstance(value, str) else value or []:
            try:
                codecs.lookup(encoding)
            except LookupError:
                raise ValueError(f"unknown encoding {encoding!r} (e.g. utf-8, cp932)") from None
        return value

    @property
    def encodings(self) -> tuple[str, ...] | None:
        if self.encoding is None:
            return None
        return (self.encoding,) if isinstance(self.encoding, str) else tuple(self.encoding)

    def source_column(self, contract_column: str) -> str:
        """The source's name of a contract column (its own name when not mapped)."""
        for source_name, target in self.columns.items():
            if target == contract_column:
                return source_name
        return contract_column

    def format_list(self, column: str) -> list[str]:
        formats = self.formats.get(column, [])
        return [formats] if isinstance(formats, str) else list(formats)


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class SourceConfig(Strict):
    """One source system. Keys other than the settings below name the source's objects."""

    enabled: bool = True
    url: str | None = None
    connection_id: str | None = None
    page_size: int = Field(default=200, gt=0)
    timezone: str = "Asia/Tokyo"
    currency: str = "JPY"
    amounts_in_minor_units: bool = False
    objects: dict[str, ObjectConfig] = {}

    @model_validator(mode="before")
    @classmethod
    def _gather_objects(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        settings = {k: v for k, v in data.items() if k in cls.model_fields and k != "objects"}
        objects = {k: v for k, v in data.items() if k not in cls.model_fields}
        return {**settings, "objects": {**data.get("objects", {}), **objects}}

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (e.g. Asia/Tokyo, UTC)") from None
        return value

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, value: str) -> str:
        if value.upper() not in MINOR_UNITS:
            raise ValueError(f"unknown currency {value!r}; known: {', '.join(MINOR_UNITS)}")
        return value.upper()

    @property
    def minor_unit_digits(self) -> int:
        return MINOR_UNITS[self.currency]


class SourcesConfig(Strict):
    sources: dict[str, SourceConfig | None]


def sources_config_path() -> Path:
    return Path(os.environ.get("CRM360_SOURCES_CONFIG", PROJECT_ROOT / "config" / "sources.yml"))


def load_sources_config(path: Path | None = None) -> dict[str, SourceConfig]:
    """Every source's configuration, validated against the schema and the contracts; a source
    not in the file is absent from the result. Raises ConfigError naming every problem."""
    path = path or sources_config_path()
    return _load_sources_config(path, file_version(path))


@cache
def _load_sources_config(path: Path, _version: tuple[int, int]) -> dict[str, SourceConfig]:
    data, node = read_yaml(
        path,
        "sources config",
        "set CRM360_SOURCES_CONFIG to your file, or start from config/sources.yml",
    )
    config = validate(data, node, SourcesConfig, path)
    sources = {name: block or SourceConfig() for name, block in config.sources.items()}
    problems = _check_against_contracts(sources)
    raise_problems(path, node, [(["sources", *loc], message) for loc, message in problems])
    return sources


def _check_against_contracts(sources: dict[str, SourceConfig]) -> list[tuple[list, str]]:
    """Problems only the contracts can tell: unknown sources, objects and columns, where the
    data is, unsupported URLs."""
    from ingestion.contracts import contract_sources, load_contract

    known = contract_sources()
    problems: list[tuple[list, str]] = []
    for name, block in sources.items():
        if name not in known:
            problems.append(([name], f"unknown source; known: {', '.join(known)}"))
            continue
        contracts = load_contract(name)
        for object_name in block.objects:
            if object_name not in contracts:
                problems.append(
                    (
                        [name, object_name],
                        f"unknown object of {name}; known: {', '.join(contracts)}",
                    )
                )
        if not block.enabled:
            continue
        problems += _check_location(name, block, contracts)
        for object_name, obj in block.objects.items():
            if object_name in contracts:
                problems += _check_object([name, object_name], obj, contracts[object_name])
    return problems


def _check_location(name: str, block: SourceConfig, contracts: dict) -> list[tuple[list, str]]:
    formats = {c.format for c in contracts.values()}
    problems = []
    if formats & {"database", "api"} and not block.url:
        problems.append(([name], "`url` is required (a database URL or the API's base URL)"))
    if "database" in formats and block.url and not block.url.startswith(_DATABASE_SCHEMES):
        scheme = block.url.split(":", 1)[0]
        problems.append(
            (
                [name, "url"],
                f"unsupported database {scheme!r}: use sqlite:///path or "
                "postgresql://user@host/db, or export the tables to files",
            )
        )
    if formats & FILE_FORMATS:
        for object_name, obj in block.objects.items():
            if object_name in contracts and obj.enabled and not obj.files:
                problems.append(([name, object_name], "`files` (a glob pattern) is required"))
    return problems


def _check_object(loc: list, obj: ObjectConfig, contract) -> list[tuple[list, str]]:
    columns = list(contract.columns)
    problems = []
    targets = list(obj.columns.values())
    for source_name, target in obj.columns.items():
        if target not in contract.columns:
            problems.append(
                (
                    [*loc, "columns", source_name],
                    f"maps to {target!r}, which is not a column of {contract.source}."
                    f"{contract.name}; columns: {', '.join(columns)}",
                )
            )
        elif targets.count(target) > 1:
            problems.append(
                (
                    [*loc, "columns", source_name],
                    f"{target!r} is the target of more than one column",
                )
            )
    for key, kinds in (("values", None), ("formats", ("date", "timestamp"))):
        for column in getattr(obj, key):
            if column not in contract.columns:
                problems.append(
                    (
                        [*loc, key, column],
                        f"not a column of {contract.source}.{contract.name} (name the "
                        f"contract's column, not the source's); columns: "
                        f"{', '.join(columns)}",
                    )
                )
            elif kinds and contract.columns[column].type not in kinds:
                problems.append(
                    (
                        [*loc, key, column],
                        f"formats apply to date and timestamp "
                        f"columns; {column} is {contract.columns[column].type}",
                    )
                )
    if (obj.table or obj.query) and contract.format != "database":
        problems.append((loc, "`table` and `query` apply to database sources only"))
    if obj.table and obj.query:
        problems.append((loc, "give `table` or `query`, not both"))
    return problems


def source_config(source: str) -> SourceConfig | None:
    """The validated configuration of one source; None when the source is not configured."""
    return load_sources_config().get(source)


def resolve_url(block: SourceConfig, source_dir: Path) -> str:
    """The source's URL: its Airflow Connection if one is defined, else the config's `url`.

    Inside an Airflow task the Connection is read through Airflow (`Connection.get`: the
    environment's AIRFLOW_CONN_<ID>, the metadata database or a secrets backend), which
    registers its password with Airflow's secrets masker; the URL's other secret parts (token
    values in its query) are registered too, so a worker's task log shows `***` for them.
    Outside Airflow (the CLI, the tests) AIRFLOW_CONN_<ID> is read from the environment. Either
    way, what is stored or logged of a URL goes through `crm360.redact.redact_url` first: the
    masker does not cover `airflow dags test` output, XComs or the warehouse."""
    from crm360.redact import in_airflow_task, mask_url_in_airflow

    url = None
    if block.connection_id:
        url = os.environ.get(f"AIRFLOW_CONN_{block.connection_id.upper()}") or None
        if in_airflow_task():
            url = _airflow_connection_url(block.connection_id, url)
    if url is None:
        url = str(block.url).replace("{source_dir}", str(source_dir))
    mask_url_in_airflow(url)
    return url


def _airflow_connection_url(conn_id: str, from_env: str | None) -> str | None:
    """The Connection's URL read through Airflow's Task SDK (None when it is not defined); the
    environment's own URI when it comes from there, as written (Airflow's round trip would
    rename the scheme, postgresql:// to postgres://)."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = Connection.get(conn_id)  # registers the password with the secrets masker
    except AirflowNotFoundException:
        return from_env
    return from_env or conn.get_uri()
