"""Running dbt against the warehouse as a subprocess (one dbt invocation per call)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from datetime import date
from pathlib import Path

from crm360.settings import Settings

log = logging.getLogger(__name__)

# dbt's unit tests check the models' SQL on fixed inputs, so only a code change can fail them:
# they run in the test suite and in development (`dbt test --select test_type:unit`), and the
# daily builds leave them out, as dbt recommends for production runs
DAILY_BUILD_EXCLUDED_TYPES = ("unit_test",)

# the environment variable the as_of_date macro (and the Python models' configs) read the run's
# date from: a dbt var that changed every day made dbt parse the whole project on every run
AS_OF_DATE_ENV = "CRM360_AS_OF_DATE"


class DbtError(RuntimeError):
    """A dbt command failed; the message carries the failing nodes."""


class DbtDataTestFailed(DbtError):
    """dbt's data tests failed and nothing else did: the data breaks a rule, and building again
    on the same data fails the same way, so the task is not retried."""

    permanent = True


def die_with_parent():
    """A subprocess `preexec_fn` by which, on Linux, the kernel sends the child SIGTERM when
    the process that started it dies, even by SIGKILL: a dbt left running by a killed task
    would hold the warehouse's write lock for its remaining minutes. None elsewhere. libc is
    looked up here, in the parent: the child, forked from a process with threads, only makes
    the one call."""
    import ctypes
    import signal

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux: nothing to arrange
        return None
    pr_set_pdeathsig, sigterm = 1, int(signal.SIGTERM)
    return lambda: prctl(pr_set_pdeathsig, sigterm, 0, 0, 0)


def dbt_executable() -> str:
    candidate = Path(sys.executable).with_name("dbt")
    return str(candidate) if candidate.exists() else "dbt"


def run_dbt(
    settings: Settings,
    args: list[str],
    dbt_vars: dict | None = None,
    env: dict[str, str] | None = None,
) -> dict:
    """Run `dbt <args>` in the project, with `env` added to its environment; return a summary
    of run_results.json."""
    cmd = [
        dbt_executable(),
        *args,
        "--project-dir",
        str(settings.dbt_project_dir),
        "--profiles-dir",
        str(settings.dbt_project_dir),
        "--target-path",
        str(settings.dbt_target_dir),
        "--log-path",
        str(settings.dbt_target_dir / "logs"),
    ]
    if dbt_vars:
        cmd += ["--vars", json.dumps(dbt_vars)]
    log.info("running %s", " ".join(cmd))
    proc = subprocess.run(
        cmd,
        preexec_fn=die_with_parent(),
        env={**settings.dbt_env(), **(env or {})},
        cwd=settings.dbt_project_dir,
        capture_output=True,
        text=True,
        check=False,
    )
    for line in proc.stdout.splitlines():
        log.info("dbt | %s", line)
    summary = _summarise(settings.dbt_target_dir / "run_results.json")
    if proc.returncode != 0:
        failed = "; ".join(summary.get("failed", [])) or proc.stderr.strip()[-2000:]
        statuses = set(summary.get("statuses", {}))
        only_tests = "fail" in statuses and "error" not in statuses
        error = DbtDataTestFailed if only_tests else DbtError
        raise error(f"dbt {' '.join(args)} failed (exit {proc.returncode}): {failed}")
    return summary


def run_dbt_as_of(settings: Settings, args: list[str], as_of: date) -> dict:
    """run_dbt as the daily builds run it: the date in AS_OF_DATE_ENV, the settings' vars."""
    return run_dbt(
        settings, args, {"dormant_days": settings.dormant_days}, {AS_OF_DATE_ENV: as_of.isoformat()}
    )


def _summarise(run_results: Path) -> dict:
    if not run_results.exists():
        return {}
    results = json.loads(run_results.read_text(encoding="utf-8"))["results"]
    statuses: dict[str, int] = {}
    failed = []
    for result in results:
        statuses[result["status"]] = statuses.get(result["status"], 0) + 1
        if result["status"] in ("error", "fail"):
            failed.append(f"{result['unique_id']}: {(result.get('message') or '').strip()[:300]}")
    return {"nodes": len(results), "statuses": statuses, "failed": failed}
