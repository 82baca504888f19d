"""Removing old audience exports, so that the export folder does not keep every run's full
audience (personal data) for ever.

In each audience folder (layout in activation/publish.py), a run folder whose manifest says it
was created more than `keep_days` ago is deleted, except:

- the folder `latest.json` points to (what the marketing tools read), whatever its age;
- the folder that export's deltas were taken against (its manifest's `delta.previous_run_id`):
  a re-export of the latest run (a retry, a duplicate Asset event) diffs against it again
  (`previous_members`), and must write the same additions and removals as the first time;
- anything that is not a dated run folder: hidden folders (an export being written, or left by
  a killed one, which `publish_audience` sweeps), symbolic links, files, folders without a
  readable manifest. An audience folder without a readable `latest.json` is left alone.

`CRM360_EXPORT_RETENTION_DAYS` (default 90) sets `keep_days`; the export task prunes after
publishing (crm360.pipeline.export_audiences).
"""

from __future__ import annotations

import json
import logging
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

from activation.publish import run_folder_name

log = logging.getLogger(__name__)


def _read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _created_at(run_folder: Path) -> datetime | None:
    """When the run folder's export was written (its manifest's `created_at`), None if unknown."""
    manifest = _read_json(run_folder / "manifest.json")
    try:
        created = datetime.fromisoformat(manifest["created_at"])
    except (TypeError, KeyError, ValueError):
        return None
    return created if created.tzinfo else created.replace(tzinfo=UTC)


def _kept_folders(audience_dir: Path) -> set[str] | None:
    """Names of the run folders that are kept whatever their age (None: prune nothing here)."""
    latest = _read_json(audience_dir / "latest.json")
    if not latest or not isinstance(latest.get("path"), str):
        return None
    kept = {latest["path"]}
    manifest = _read_json(audience_dir / latest["path"] / "manifest.json") or {}
    delta = manifest.get("delta")
    previous = delta.get("previous_run_id") if isinstance(delta, dict) else None
    if isinstance(previous, str) and previous:
        kept.add(run_folder_name(previous))
    return kept


def prune_exports(export_dir: Path, keep_days: int, now: datetime) -> list[Path]:
    """Delete the run folders of every audience under `export_dir` created more than
    `keep_days` before `now` (timezone-aware), except those the module docstring names.
    Returns the folders removed."""
    if keep_days < 1:
        raise ValueError(f"keep_days must be 1 or more, not {keep_days}")
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    cutoff = now - timedelta(days=keep_days)
    removed: list[Path] = []
    if not export_dir.is_dir():
        return removed
    for audience_dir in sorted(export_dir.iterdir()):
        if audience_dir.name.startswith(".") or audience_dir.is_symlink():
            continue
        if audience_dir.is_dir():
            removed += _prune_audience(audience_dir, cutoff)
    return removed


def _prune_audience(audience_dir: Path, cutoff: datetime) -> list[Path]:
    kept = _kept_folders(audience_dir)
    if kept is None:
        log.info("%s has no readable latest.json: no run folder pruned there", audience_dir)
        return []
    removed = []
    for folder in sorted(audience_dir.iterdir()):
        if folder.name in kept or folder.name.startswith(".") or folder.is_symlink():
            continue
        if not folder.is_dir():
            continue
        created = _created_at(folder)
        if created is None or created >= cutoff:
            continue
        shutil.rmtree(folder)
        removed.append(folder)
        log.info("removed export %s (created %s, before %s)", folder, created, cutoff)
    return removed
