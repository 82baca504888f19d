"""Old exports and run logs are removed after their retention days; never the export
`latest.json` points to, nor the one its deltas were taken against (a re-export of the same run
diffs against it again)."""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime, timedelta

import pytest

import activation.publish as publish
from activation.retention import prune_exports
from crm360 import cli
from crm360.retention import prune_run_logs
from crm360.settings import SettingError, export_retention_days, run_log_retention_days
from tests.activation import helpers
from tests.activation.helpers import write_base

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)
PASSED = {"status": "passed"}
warehouse = helpers.warehouse
audience = helpers.audience


def _run_folder(audience_dir, run_id, age_days, previous=None):
    folder = audience_dir / publish.run_folder_name(run_id)
    folder.mkdir(parents=True)
    (folder / "members.parquet").write_bytes(b"")
    manifest = {
        "run_id": run_id,
        "created_at": (NOW - timedelta(days=age_days)).isoformat(timespec="seconds"),
        "delta": {"previous_run_id": previous, "added": 0, "removed": 0},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return folder


def _point_latest(audience_dir, folder):
    (audience_dir / "latest.json").write_text(
        json.dumps({"run_id": folder.name, "path": folder.name}), encoding="utf-8"
    )


def test_old_run_folders_go_latest_and_its_delta_base_stay(tmp_path):
    audience_dir = tmp_path / "dormant"
    old = _run_folder(audience_dir, "scheduled__2026-06-01T00:00:00+00:00", 153)
    older = _run_folder(audience_dir, "scheduled__2026-05-01T00:00:00+00:00", 184)
    base = _run_folder(audience_dir, "scheduled__2026-07-01T00:00:00+00:00", 123)
    recent = _run_folder(audience_dir, "scheduled__2026-10-01T00:00:00+00:00", 31)
    latest = _run_folder(
        audience_dir, "manual__2026-07-02", 122, previous="scheduled__2026-07-01T00:00:00+00:00"
    )
    _point_latest(audience_dir, latest)

    removed = prune_exports(tmp_path, 90, NOW)

    assert sorted(removed) == sorted([old, older])
    assert not old.exists() and not older.exists()
    assert base.exists() and recent.exists() and latest.exists()
    assert (audience_dir / "latest.json").exists()


def test_what_cannot_be_dated_or_is_not_a_run_folder_is_left(tmp_path):
    audience_dir = tmp_path / "winback"
    latest = _run_folder(audience_dir, "run9", 1)
    _point_latest(audience_dir, latest)
    no_manifest = audience_dir / "run1"
    no_manifest.mkdir()
    broken = _run_folder(audience_dir, "run2", 400)
    (broken / "manifest.json").write_text("{not json", encoding="utf-8")
    hidden = _run_folder(audience_dir, ".tmp-run3-12345", 400)
    linked = audience_dir / "run4"
    linked.symlink_to(_run_folder(tmp_path / "elsewhere", "run4", 400))
    # an audience without latest.json: nothing there is known to be superseded
    orphan = _run_folder(tmp_path / "orphan", "run5", 400)
    (tmp_path / "notes.txt").write_text("not an audience", encoding="utf-8")

    assert prune_exports(tmp_path, 90, NOW) == []
    for kept in (latest, no_manifest, broken, hidden, linked, orphan):
        assert kept.exists(), kept


def test_keep_days_and_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="1 or more"):
        prune_exports(tmp_path, 0, NOW)
    assert prune_exports(tmp_path / "absent", 90, NOW) == []


def test_a_rerun_after_pruning_keeps_its_deltas(warehouse, audience, settings):
    """Publish three runs, age them all past retention: only the first goes, and the latest
    run exported again still writes the same removals against the second."""
    exports = settings.export_dir
    publish.publish_audience(warehouse, audience, exports, "run1", PASSED)
    publish.publish_audience(warehouse, audience, exports, "run2", PASSED)
    write_base(warehouse, [{"customer_id": "cus_a"}])
    first = publish.publish_audience(warehouse, audience, exports, "run3", PASSED)
    audience_dir = exports / audience.name
    for folder in ("run1", "run2", "run3"):
        path = audience_dir / folder / "manifest.json"
        manifest = json.loads(path.read_text(encoding="utf-8"))
        manifest["created_at"] = (NOW - timedelta(days=200)).isoformat()
        path.write_text(json.dumps(manifest), encoding="utf-8")

    assert prune_exports(exports, 90, NOW) == [audience_dir / "run1"]

    again = publish.publish_audience(warehouse, audience, exports, "run3", PASSED)
    assert (again["added"], again["removed"]) == (first["added"], first["removed"])
    manifest = json.loads((audience_dir / "run3" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["delta"]["previous_run_id"] == "run2"


def test_retention_settings(monkeypatch):
    for name, read in (
        ("CRM360_EXPORT_RETENTION_DAYS", export_retention_days),
        ("CRM360_RUN_LOG_RETENTION_DAYS", run_log_retention_days),
    ):
        monkeypatch.delenv(name, raising=False)
        assert read() == 90
        monkeypatch.setenv(name, " 30 ")
        assert read() == 30
        for bad in ("0", "-5", "1.5", "ninety", "３０"):
            monkeypatch.setenv(name, bad)
            with pytest.raises(SettingError, match=name):
                read()


def _log(folder, name, age_days):
    path = folder / name
    path.write_text("log", encoding="utf-8")
    stamp = (NOW - timedelta(days=age_days)).timestamp()
    os.utime(path, (stamp, stamp))
    return path


def test_old_run_logs_go(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    old = _log(runs, "crm360_daily_2026-07-01_20260701T000102123456Z.log", 120)
    recent = _log(runs, "crm360_audiences_2026-10-30_20261030T000102123456Z.log", 2)
    other = _log(runs, "notes.log", 400)

    assert prune_run_logs(runs, 90, NOW) == [old]
    assert recent.exists() and other.exists() and not old.exists()
    assert prune_run_logs(tmp_path / "absent", 90, NOW) == []


def test_crm360_run_prunes_old_logs_before_it_starts(tmp_path, monkeypatch):
    home = tmp_path / "airflow"
    (home / "runs").mkdir(parents=True)
    monkeypatch.setenv("AIRFLOW_HOME", str(home))
    monkeypatch.setenv("CRM360_RUN_LOG_RETENTION_DAYS", "30")
    now = datetime.now(UTC)
    name = "crm360_daily_2026-01-01_20260101T000000000000Z.log"
    old = home / "runs" / name
    old.write_text("log", encoding="utf-8")
    stamp = (now - timedelta(days=31)).timestamp()
    os.utime(old, (stamp, stamp))
    started = []

    def fake_execute(settings, logical_date, dag_id, on_line=None, log_file=None):
        started.append((dag_id, old.exists()))
        return cli.DagRunResult(dag_id, logical_date, log_file, 1, None, [])

    monkeypatch.setattr(cli, "execute_dag", fake_execute)
    monkeypatch.setattr(cli, "check_logical_date", lambda *args: None)
    monkeypatch.setattr(cli, "explain_failure", lambda *args: "failed")
    assert cli.run_with_progress(cli.load_settings(), date(2026, 11, 1)) is False
    assert started == [("crm360_daily", False)]


def test_crm360_run_refuses_a_bad_retention_setting(monkeypatch, capsys):
    monkeypatch.setenv("CRM360_RUN_LOG_RETENTION_DAYS", "forever")
    monkeypatch.setattr(cli, "check_logical_date", lambda *args: None)
    assert cli.main(["run", "--date", "2026-11-01"]) == 2
    assert "CRM360_RUN_LOG_RETENTION_DAYS must be a whole number" in capsys.readouterr().err
