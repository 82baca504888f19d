"""A project-local Airflow: AIRFLOW_HOME under the project, SQLite metadata, our dags/ folder.

Used by the CLI and the tests to run the real DAG with `airflow dags test` (in-process, no
scheduler or webserver to install).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from crm360.settings import Settings


def airflow_env(settings: Settings, airflow_home: Path | None = None) -> dict[str, str]:
    home = airflow_home or Path(os.environ.get("AIRFLOW_HOME", settings.home / ".airflow"))
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(settings.home / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": os.environ.get(
            "AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO"
        ),
        "CRM360_HOME": str(settings.home),
        "CRM360_SOURCE_DIR": str(settings.source_dir),
        "CRM360_WAREHOUSE": str(settings.warehouse),
        "CRM360_PUBLISHED_WAREHOUSE": str(settings.published_warehouse),
        "CRM360_EXPORT_DIR": str(settings.export_dir),
        "CRM360_GX_DIR": str(settings.gx_dir),
        "CRM360_DBT_TARGET_DIR": str(settings.dbt_target_dir),
        "GX_ANALYTICS_ENABLED": "false",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }


def airflow_executable() -> str:
    candidate = Path(sys.executable).with_name("airflow")
    return str(candidate) if candidate.exists() else "airflow"


def ensure_metadata_db(env: dict[str, str]) -> None:
    """Create or upgrade the SQLite metadata database (idempotent)."""
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    airflow = airflow_executable()
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True, text=True)
    # DuckDB allows one writer: every task that writes the warehouse takes this pool's one slot
    subprocess.run(
        [airflow, "pools", "set", "warehouse_writer", "1", "tasks that write the DuckDB warehouse"],
        env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip


def dags_test(
    env: dict[str, str], dag_id: str, logical_date: str, log_file: Path | None = None
) -> subprocess.CompletedProcess:
    """Run one whole DAG run in-process with `airflow dags test`; output goes to log_file."""
    cmd = [airflow_executable(), "dags", "test", dag_id, logical_date]
    if log_file is None:
        return subprocess.run(cmd, env=env, check=False, capture_output=True, text=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("w", encoding="utf-8") as handle:
        return subprocess.run(cmd, env=env, check=False, stdout=handle, stderr=subprocess.STDOUT)
