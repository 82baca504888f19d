"""Any history at its own dates: the DAGs' start date comes from CRM360_START_DATE (by default
early enough for a 1990s purchase log), Airflow creates every task for a 1998 logical date, and
a backfill of 1997-98 lists every day."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import make_settings

from crm360.airflow_env import (
    airflow_env,
    airflow_executable,
    dag_run_after,
    ensure_metadata_db,
    task_instances,
)
from crm360.settings import PROJECT_ROOT

DAG_IDS = ("crm360_daily", "crm360_audiences")


def parse_dags():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(PROJECT_ROOT / "dags"))


def test_by_default_a_1990s_history_can_run_at_its_own_dates(monkeypatch):
    monkeypatch.delenv("CRM360_START_DATE", raising=False)
    monkeypatch.delenv("CRM360_DAILY_END_DATE", raising=False)
    bag = parse_dags()
    for dag_id in DAG_IDS:
        dag = bag.dags[dag_id]
        assert dag.start_date == datetime(1970, 1, 1, tzinfo=UTC)
        assert dag.end_date is None
        # catch-up off: the early start date schedules no run of its own
        assert dag.catchup is False
        assert all(t.start_date <= datetime(1997, 1, 1, tzinfo=UTC) for t in dag.tasks)


def test_the_start_date_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("CRM360_START_DATE", "1997-01-01")
    monkeypatch.setenv("CRM360_DAILY_END_DATE", "1998-12-31")
    bag = parse_dags()
    assert bag.import_errors == {}
    for dag_id in DAG_IDS:
        assert bag.dags[dag_id].start_date == datetime(1997, 1, 1, tzinfo=UTC)
    assert bag.dags["crm360_daily"].end_date == datetime(1998, 12, 31, tzinfo=UTC)

    monkeypatch.setenv("CRM360_START_DATE", "01/01/1997")
    errors = parse_dags().import_errors
    assert errors and all("CRM360_START_DATE must be an ISO date" in e for e in errors.values())


@pytest.fixture(scope="module")
def airflow_1998(tmp_path_factory):
    """A metadata database with the DAGs in it, under the default start date."""
    root = tmp_path_factory.mktemp("dates")
    env = airflow_env(make_settings(root), root / "airflow")
    env.pop("CRM360_START_DATE", None)
    env.pop("CRM360_DAILY_END_DATE", None)
    ensure_metadata_db(env)
    airflow = airflow_executable()
    subprocess.run([airflow, "dags", "reserialize"], env=env, check=True, capture_output=True)
    return env


@pytest.mark.slow
def test_a_1998_logical_date_runs_every_task(airflow_1998):
    env = airflow_1998
    # every task marked done instead of run: what matters is that Airflow creates them all
    subprocess.run(
        [airflow_executable(), "dags", "test", "crm360_daily", "1998-06-30",
         "--mark-success-pattern", ".*"],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    home = Path(env["AIRFLOW_HOME"])
    run = dag_run_after(home, "crm360_daily", 0)
    tasks = task_instances(home, "crm360_daily", run["run_id"])
    assert run["state"] == "success"
    assert len(tasks) == 15
    assert {t["state"] for t in tasks} == {"success"}


@pytest.mark.slow
def test_a_backfill_of_1997_and_1998_creates_a_run_per_day(airflow_1998):
    listing = subprocess.run(
        [airflow_executable(), "backfill", "create", "--dag-id", "crm360_daily",
         "--from-date", "1997-01-01", "--to-date", "1998-06-29", "--max-active-runs", "1",
         "--dry-run"],
        env=airflow_1998, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    days = [line.split()[1] for line in listing.splitlines() if line.startswith("| 199")]
    assert len(days) == 365 + 180
    assert (days[0], days[-1]) == ("1997-01-01", "1998-06-29")
