"""A project-local Airflow: AIRFLOW_HOME under the project, SQLite metadata, our dags/ folder.

Used by the CLI and the tests to run the real DAG with `airflow dags test` (in-process, no
scheduler or webserver to install), to follow its tasks while it runs and to read what
happened afterwards (the metadata database's `dag_run` and `task_instance` rows, and each
failed task's exception from its log).

Everything Airflow creates here is private to the owner: its processes start with the umask
of `crm360.settings.private_files`, and its task logs, which Airflow chmods itself (0664 by
default), are made 0600 in folders 0700.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from crm360.settings import PRIVATE_UMASK, Settings


def default_airflow_home(settings: Settings) -> Path:
    """AIRFLOW_HOME, else `.airflow` under the project."""
    return Path(os.environ.get("AIRFLOW_HOME", settings.home / ".airflow"))


def airflow_env(settings: Settings, airflow_home: Path | None = None) -> dict[str, str]:
    home = airflow_home or default_airflow_home(settings)
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(settings.home / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": os.environ.get(
            "AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO"
        ),
        "AIRFLOW__LOGGING__FILE_TASK_HANDLER_NEW_FILE_PERMISSIONS": os.environ.get(
            "AIRFLOW__LOGGING__FILE_TASK_HANDLER_NEW_FILE_PERMISSIONS", "0o600"
        ),
        "AIRFLOW__LOGGING__FILE_TASK_HANDLER_NEW_FOLDER_PERMISSIONS": os.environ.get(
            "AIRFLOW__LOGGING__FILE_TASK_HANDLER_NEW_FOLDER_PERMISSIONS", "0o700"
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
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True, mode=0o700)
    airflow = airflow_executable()
    subprocess.run(
        [airflow, "db", "migrate"],
        env=env, check=True, capture_output=True, text=True, umask=PRIVATE_UMASK,
    )  # fmt: skip
    # DuckDB allows one writer: every task that writes the warehouse takes this pool's one slot
    subprocess.run(
        [airflow, "pools", "set", "warehouse_writer", "1", "tasks that write the DuckDB warehouse"],
        env=env, check=True, capture_output=True, text=True, umask=PRIVATE_UMASK,
    )  # fmt: skip


def dags_test(
    env: dict[str, str],
    dag_id: str,
    logical_date: str,
    log_file: Path | None = None,
    on_line: Callable[[str], None] | None = None,
) -> subprocess.CompletedProcess:
    """Run one whole DAG run in-process with `airflow dags test`; output goes to log_file, and
    each line to `on_line` as it comes."""
    cmd = [airflow_executable(), "dags", "test", dag_id, logical_date]
    if log_file is None:
        return subprocess.run(
            cmd, env=env, check=False, capture_output=True, text=True, umask=PRIVATE_UMASK
        )
    log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if on_line:  # each line as soon as it is written, to follow the run while it works
        env = {**env, "PYTHONUNBUFFERED": "1"}
    private = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.chmod(log_file, 0o600)  # an earlier run's log keeps its mode otherwise
    with (
        open(private, "w", encoding="utf-8") as handle,
        subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            encoding="utf-8", errors="replace", umask=PRIVATE_UMASK,
        ) as proc,
    ):  # fmt: skip
        for line in proc.stdout:
            handle.write(line)
            if on_line:
                handle.flush()
                on_line(line)
    return subprocess.CompletedProcess(cmd, proc.returncode)


# What `airflow dags test` logs around each task it runs (Airflow 3's dag.test loop).
_TASK_EVENT = re.compile(r"\[DAG TEST\] (starting|end task) task_id=(\S+)")


def task_event(line: str) -> tuple[str, str] | None:
    """("start" | "end", task_id) when the line is `airflow dags test` starting or ending a
    task, else None."""
    match = _TASK_EVENT.search(line)
    if not match:
        return None
    return ("start" if match[1] == "starting" else "end"), match[2]


def _metadata(airflow_home: Path, sql: str, params: tuple = ()) -> list[dict]:
    db = airflow_home / "airflow.db"
    if not db.exists():
        return []
    # read-only, waiting for a moment if the running DAG is writing
    with sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=30) as con:
        con.row_factory = sqlite3.Row
        return [dict(row) for row in con.execute(sql, params).fetchall()]


def last_dag_run_id(airflow_home: Path, dag_id: str) -> int:
    """The metadata id of the DAG's newest run (0 if none): runs after it are newer."""
    rows = _metadata(airflow_home, "select max(id) as id from dag_run where dag_id = ?", (dag_id,))
    return (rows[0]["id"] if rows else None) or 0


def dag_run_after(airflow_home: Path, dag_id: str, after_id: int) -> dict | None:
    """The DAG's first run created after run `after_id` (`run_id`, `state`), or None."""
    rows = _metadata(
        airflow_home,
        "select id, run_id, state from dag_run where dag_id = ? and id > ? order by id limit 1",
        (dag_id, after_id),
    )
    return rows[0] if rows else None


_TASK_COLUMNS = "task_id, state, try_number, max_tries, duration"


def task_instances(airflow_home: Path, dag_id: str, run_id: str) -> list[dict]:
    """The run's task instances: task_id, state, try_number, max_tries (its retries) and
    duration (seconds), in the order they started (never started: last)."""
    return _metadata(
        airflow_home,
        f"select {_TASK_COLUMNS} from task_instance where dag_id = ? and run_id = ? "
        "order by start_date is null, start_date, task_id",
        (dag_id, run_id),
    )


def latest_task_instance(airflow_home: Path, dag_id: str, task_id: str) -> dict | None:
    """The task's instance in the DAG's newest run, as `task_instances` gives it."""
    rows = _metadata(
        airflow_home,
        f"select {_TASK_COLUMNS} from task_instance where dag_id = ? and task_id = ? and "
        "run_id = (select run_id from dag_run where dag_id = ? order by id desc limit 1)",
        (dag_id, task_id, dag_id),
    )
    return rows[0] if rows else None


_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
_MODULE_PREFIX = re.compile(r"^(?:[A-Za-z_]\w*\.)+(?=[A-Za-z_]\w*: )")


def task_errors(lines: Iterable[str]) -> dict[str, str]:
    """Each failed task's exception (`Type: message`) in an `airflow dags test` log: the last
    traceback of the task's last attempt, without the exception's module path."""
    errors: dict[str, str] = {}
    task, trace = None, None
    for line in lines:
        line = line.rstrip("\n")
        event = task_event(line)
        if event or _LOG_LINE.match(line):
            if trace and task:
                errors[task] = _exception_of(trace)
            trace = None
            if event and event[0] == "start":
                task = event[1]
                errors.pop(task, None)  # a retry: only its own error counts
        elif line.startswith("Traceback (most recent call last):"):
            trace = []  # of chained exceptions, the last one printed was raised
        elif trace is not None:
            trace.append(line)
    if trace and task:
        errors[task] = _exception_of(trace)
    return {task: error for task, error in errors.items() if error}


def _exception_of(trace: list[str]) -> str:
    """The `Type: message` lines after a traceback's frames."""
    frames = [i for i, line in enumerate(trace) if line.startswith('  File "')]
    rest = trace[frames[-1] + 1 :] if frames else trace
    while rest and rest[0].startswith("    "):  # the frame's source line and its markers
        rest = rest[1:]
    message = "\n".join(rest).strip()
    return _MODULE_PREFIX.sub("", message)
