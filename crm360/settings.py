"""Where things live, from environment variables with defaults under the project folder.

Every path the pipeline reads or writes is here, so a user points the pipeline at their own
exports and warehouse without touching code. See the settings table in README.md.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


_MEMORY = re.compile(r"\d+(\.\d+)?\s*([KMGT]i?B|bytes)", re.IGNORECASE)


def duckdb_block_memory() -> str:
    """How much memory DuckDB's block allocator keeps for reuse (its `block_allocator_memory`):
    CRM360_DUCKDB_BLOCK_MEMORY (e.g. `4GB`, `0MB` for none), else a quarter of the memory of
    this machine (or of its container). Memory DuckDB frees within it is reused instead of
    going back to the operating system to be faulted in again by the next query: at a million
    customers, the marts spent an eighth of their CPU time in the kernel doing that, and half
    as much with it kept. The process holds that memory until it exits."""
    value = os.environ.get("CRM360_DUCKDB_BLOCK_MEMORY", "").strip()
    if value:
        if not _MEMORY.fullmatch(value):
            raise ValueError(
                f"CRM360_DUCKDB_BLOCK_MEMORY must be an amount of memory such as 4GB, 512MiB "
                f"or 0MB, not {value!r}"
            )
        return value
    return f"{_machine_memory() // 4 // 2**20}MiB"


def _machine_memory() -> int:
    """Bytes of memory this process may use: the machine's, or its container's limit if lower."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit).read_text(encoding="ascii").strip()
        except OSError:
            continue
        if text.isdigit():
            memory = min(memory, int(text))
    return memory


# Owner only: the warehouse, its published copy, exports, Data Docs and Airflow's files hold
# personal data, so nothing the pipeline creates is readable by other users of the machine.
PRIVATE_UMASK = 0o077
OPTIONAL_SOURCES_ENV = "CRM360_OPTIONAL_SOURCES"


class SettingError(ValueError):
    """A setting (environment variable) with a value the pipeline cannot use."""

    permanent = True  # a retry cannot fix it


def private_files() -> None:
    """Make every file this process (and any child it starts) creates from now on private:
    files 0600, folders 0700. Called at the start of the CLI and of every DAG task."""
    os.umask(PRIVATE_UMASK)


def optional_sources() -> frozenset[str]:
    """The sources whose failure does not stop a run (`CRM360_OPTIONAL_SOURCES`, comma-
    separated): the marts are built without their new data and the run report names them
    stale. By default none: every configured source is required."""
    from ingestion import SOURCES

    value = os.environ.get(OPTIONAL_SOURCES_ENV, "")
    names = frozenset(name.strip() for name in value.split(",") if name.strip())
    unknown = sorted(names - set(SOURCES))
    if unknown:
        raise SettingError(
            f"{OPTIONAL_SOURCES_ENV} names unknown source(s) {', '.join(unknown)}: "
            f"the sources are {', '.join(SOURCES)}"
        )
    return names


PUBLISHED_PII_ENV = "CRM360_PUBLISHED_PII"


def published_pii() -> str:
    """Whether the analysts' copy holds personal data masked (`masked`, the default) or as it
    is (`plain`): CRM360_PUBLISHED_PII."""
    value = os.environ.get(PUBLISHED_PII_ENV, "masked").strip().lower() or "masked"
    if value not in ("masked", "plain"):
        raise SettingError(f"{PUBLISHED_PII_ENV} must be masked or plain, not {value!r}")
    return value


def _path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default


@dataclass(frozen=True)
class Settings:
    """Resolved paths of one pipeline environment."""

    home: Path
    source_dir: Path
    warehouse: Path
    published_warehouse: Path
    export_dir: Path
    dbt_project_dir: Path
    dbt_target_dir: Path
    gx_dir: Path
    dormant_days: int
    identity_config: Path

    @property
    def activation_warehouse(self) -> Path:
        """The copy the audience exports read (CRM360_ACTIVATION_WAREHOUSE): the state the gate
        passed, unmasked, private to the pipeline. By default `activation/` beside the
        warehouse."""
        default = self.warehouse.parent / "activation" / self.warehouse.name
        return _path("CRM360_ACTIVATION_WAREHOUSE", default)

    def dbt_env(self) -> dict[str, str]:
        """Environment for a dbt subprocess: the profile reads the warehouse path from it.

        dbt writes no log file unless DBT_LOG_LEVEL_FILE asks for one. At dbt's default (debug)
        level the file cost ~10% of a daily marts build: every node's events formatted and
        written under a lock both threads share. The pipeline logs dbt's output, and each
        node's result is in run_results.json."""
        return {
            "DBT_LOG_LEVEL_FILE": "none",
            **os.environ,
            "CRM360_WAREHOUSE": str(self.warehouse),
            "DBT_PROFILES_DIR": str(self.dbt_project_dir),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "CRM360_DUCKDB_BLOCK_MEMORY": duckdb_block_memory(),
        }


def load_settings() -> Settings:
    """Read the settings from the environment (call at run time, never at DAG import)."""
    home = _path("CRM360_HOME", PROJECT_ROOT)
    dbt_dir = _path("CRM360_DBT_PROJECT_DIR", home / "dbt_project")
    return Settings(
        home=home,
        source_dir=_path("CRM360_SOURCE_DIR", home / "data" / "demo"),
        warehouse=_path("CRM360_WAREHOUSE", home / "warehouse" / "crm360.duckdb"),
        published_warehouse=_path(
            "CRM360_PUBLISHED_WAREHOUSE", home / "warehouse" / "published" / "crm360.duckdb"
        ),
        export_dir=_path("CRM360_EXPORT_DIR", home / "exports"),
        dbt_project_dir=dbt_dir,
        dbt_target_dir=_path("CRM360_DBT_TARGET_DIR", dbt_dir / "target"),
        gx_dir=_path("CRM360_GX_DIR", home / "expectations"),
        dormant_days=int(os.environ.get("CRM360_DORMANT_DAYS", "180")),
        identity_config=_path("CRM360_IDENTITY_CONFIG", home / "config" / "identity.yml"),
    )


EXPORT_RETENTION_ENV = "CRM360_EXPORT_RETENTION_DAYS"
RUN_LOG_RETENTION_ENV = "CRM360_RUN_LOG_RETENTION_DAYS"
DEFAULT_RETENTION_DAYS = 90


def _retention_days(name: str) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return DEFAULT_RETENTION_DAYS
    if not re.fullmatch(r"[0-9]+", value) or int(value) < 1:
        raise SettingError(f"{name} must be a whole number of days, 1 or more, not {value!r}")
    return int(value)


def export_retention_days() -> int:
    """Days an audience's run folder is kept after it was written (`CRM360_EXPORT_RETENTION_
    DAYS`, default 90); the folder `latest.json` points to and the one its deltas were taken
    against are kept whatever their age (activation.retention)."""
    return _retention_days(EXPORT_RETENTION_ENV)


def run_log_retention_days() -> int:
    """Days the log of a `crm360 run` (`<AIRFLOW_HOME>/runs/*.log`) is kept after it was last
    written (`CRM360_RUN_LOG_RETENTION_DAYS`, default 90; crm360.retention)."""
    return _retention_days(RUN_LOG_RETENTION_ENV)
