"""The sources configuration (`config/sources.yml`): where each source system's data lives."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from crm360.settings import PROJECT_ROOT


def sources_config_path() -> Path:
    return Path(os.environ.get("CRM360_SOURCES_CONFIG", PROJECT_ROOT / "config" / "sources.yml"))


def source_config(source: str) -> dict[str, Any]:
    """The configuration block of one source; raises KeyError naming the file if absent."""
    path = sources_config_path()
    config = yaml.safe_load(path.read_text(encoding="utf-8"))["sources"]
    if source not in config:
        raise KeyError(f"{path}: no configuration for source {source!r}")
    return config[source]


def resolve_url(block: dict[str, Any], source_dir: Path) -> str:
    """The source's URL: the Airflow Connection (AIRFLOW_CONN_<ID>) if set, else the config."""
    connection_id = block.get("connection_id")
    if connection_id:
        override = os.environ.get(f"AIRFLOW_CONN_{connection_id.upper()}")
        if override:
            return override
    return str(block["url"]).replace("{source_dir}", str(source_dir))
