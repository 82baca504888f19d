"""Removing old logs of `crm360 run`.

Every `crm360 run` (and `crm360 demo`) writes the output of each `airflow dags test` to a new
file, `<AIRFLOW_HOME>/runs/<dag_id>_<logical date>_<started>.log` (crm360.cli.dag_log_file), so
that a re-run never overwrites why an earlier one failed. A daily run adds two files a day; the
logs name customers' rows in failures. `crm360 run` removes, before it starts, the logs last
written more than `CRM360_RUN_LOG_RETENTION_DAYS` (default 90) days ago. Old exports are pruned
by activation.retention.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

log = logging.getLogger(__name__)

# the names crm360.cli.dag_log_file gives: <dag_id>_<YYYY-MM-DD>_<YYYYmmddTHHMMSSffffffZ>.log
RUN_LOG_NAME = re.compile(r".+_\d{4}-\d{2}-\d{2}_\d{8}T\d{6,12}Z\.log")


def prune_run_logs(folder: Path, keep_days: int, now: datetime) -> list[Path]:
    """Delete the run logs in `folder` (only files named as crm360.cli.dag_log_file names
    them) last modified more than `keep_days` before `now`. Returns the files removed."""
    if keep_days < 1:
        raise ValueError(f"keep_days must be 1 or more, not {keep_days}")
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    cutoff = (now - timedelta(days=keep_days)).timestamp()
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for path in sorted(folder.iterdir()):
        if not RUN_LOG_NAME.fullmatch(path.name) or path.is_symlink() or not path.is_file():
            continue
        try:
            if path.stat().st_mtime >= cutoff:
                continue
            path.unlink()
        except FileNotFoundError:  # removed meanwhile
            continue
        removed.append(path)
    if removed:
        log.info("removed %d run log(s) older than %d days: %s", len(removed), keep_days, folder)
    return removed
