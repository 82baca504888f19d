"""The DAGs on a real Airflow: api-server, scheduler and dag-processor on 127.0.0.1; a run
triggered through the REST API, the audience run its Asset event starts, then a two-day
backfill whose marts must equal those of the same two days run one after the other."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.request
from datetime import date

import pytest
from conftest import make_settings

from crm360.airflow_env import airflow_env, airflow_executable, ensure_metadata_db
from crm360.demo.generator import generate_demo
from crm360.warehouse import connect

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def call(base: str, method: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
        method=method,
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"{}")


def wait_for(what: str, check, timeout: float, interval: float = 2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except OSError:
            pass
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def airflow_services(tmp_path_factory):
    """One set of services for the module's tests, which run in order: the backfill continues
    from the day the first test runs."""
    tmp_path = tmp_path_factory.mktemp("scheduler")
    settings = make_settings(tmp_path)
    # sources through 2026-11-02: the run of 11-01 leaves two days for the backfill to load
    generate_demo(settings.source_dir, customers=300, seed=21, as_of=date(2026, 11, 3))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **airflow_env(settings, tmp_path / "airflow"),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": base,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        # daily, but no scheduled run after 11-03: only the runs the test asks for happen
        "CRM360_DAILY_SCHEDULE": "@daily",
        "CRM360_DAILY_END_DATE": "2026-11-03",
    }
    ensure_metadata_db(env)
    airflow = airflow_executable()
    logs = tmp_path / "logs"
    logs.mkdir()
    processes = [
        subprocess.Popen(
            [airflow, *command],
            env=env,
            start_new_session=True,
            stdout=(logs / f"{command[0]}.log").open("w"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        for command in (
            ["api-server", "--port", str(port), "--host", "127.0.0.1"],
            ["scheduler"],
            ["dag-processor"],
        )
    ]
    try:
        wait_for("the API server", lambda: call(base, "GET", "/api/v2/monitor/health"), 120)
        yield base, settings, logs
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def test_run_triggered_through_the_rest_api_succeeds(airflow_services):
    base, settings, logs = airflow_services
    wait_for("the DAG to be parsed", lambda: call(base, "GET", "/api/v2/dags/crm360_daily"), 120)
    wait_for("the audience DAG to be parsed",
             lambda: call(base, "GET", "/api/v2/dags/crm360_audiences"), 120)  # fmt: skip
    for dag_id in ("crm360_daily", "crm360_audiences"):
        call(base, "PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
    call(base, "POST", "/api/v2/dags/crm360_daily/dagRuns",
         {"logical_date": "2026-11-01T00:00:00Z", "dag_run_id": "rest_api_run"})  # fmt: skip

    def finished():
        state = call(base, "GET", "/api/v2/dags/crm360_daily/dagRuns/rest_api_run")["state"]
        return state if state in ("success", "failed") else None

    state = wait_for("the run to finish", finished, 600, interval=5)
    tasks = call(base, "GET", "/api/v2/dags/crm360_daily/dagRuns/rest_api_run/taskInstances")
    states = {t["task_id"]: t["state"] for t in tasks["task_instances"]}
    assert state == "success", (states, (logs / "scheduler.log").read_text()[-3000:])
    assert set(states.values()) == {"success"}
    runs = call(base, "GET", "/api/v2/dags/crm360_daily/dagRuns")["dag_runs"]
    assert [r["dag_run_id"] for r in runs] == ["rest_api_run"]

    # publishing the marts updated the Asset, and the scheduler ran the audience DAG on it
    def audience_run():
        runs = call(base, "GET", "/api/v2/dags/crm360_audiences/dagRuns")["dag_runs"]
        done = [r for r in runs if r["state"] in ("success", "failed")]
        return done[0] if done else None

    run = wait_for("the audience run the Asset event triggers", audience_run, 300, interval=5)
    assert run["state"] == "success", (logs / "scheduler.log").read_text()[-3000:]
    assert run["run_type"] == "asset_triggered"
    with connect(settings.published_warehouse, read_only=True) as con:
        customers = con.execute("select count(*) from marts.customer_360").fetchone()[0]
    with connect(settings.warehouse, read_only=True) as con:
        report = con.execute(
            "select status from ops.run_reports where run_id = 'rest_api_run'"
        ).fetchone()
    latest = json.loads((settings.export_dir / "dormant_reactivation" / "latest.json").read_text())
    assert customers > 250
    assert report == ("success",)
    assert latest["run_id"] == "rest_api_run"


def idle(base: str) -> bool:
    """No run of either DAG is queued or running."""
    for dag_id in ("crm360_daily", "crm360_audiences"):
        runs = call(base, "GET", f"/api/v2/dags/{dag_id}/dagRuns")["dag_runs"]
        if any(r["state"] in ("queued", "running") for r in runs):
            return False
    return True


def mart_rows(warehouse) -> dict[str, list]:
    """Every mart's rows, sorted; timings and run ids (which differ between runs) left out, and
    doubles to 9 decimals (a parallel sum may add in another order: the last bits differ)."""
    with connect(warehouse, read_only=True) as con:
        tables = [t for (t,) in con.execute(
            "select table_name from information_schema.tables where table_schema = 'marts'"
        ).fetchall()]  # fmt: skip
        rows = {}
        for table in tables:
            columns = [(c, t) for (c, t) in con.execute(
                "select column_name, data_type from information_schema.columns "
                "where table_schema = 'marts' and table_name = ? order by ordinal_position",
                [table],
            ).fetchall() if not c.endswith("_seconds") and c != "run_id"]  # fmt: skip
            listed = ", ".join(
                f'round("{c}", 9)' if t == "DOUBLE" else f'"{c}"' for c, t in columns
            )
            rows[table] = con.execute(
                f'select {listed} from marts."{table}" order by all'
            ).fetchall()
    return rows


def test_backfill_of_two_days_equals_the_two_daily_runs(airflow_services, tmp_path_factory):
    from datetime import UTC, datetime, time

    from crm360 import pipeline
    from ingestion import SOURCES

    base, settings, logs = airflow_services
    # the run of 2026-11-01 (rest_api_run, the test above) is the first day
    wait_for("the runs of the test above to finish", lambda: idle(base), 600, interval=5)
    day_one = call(base, "GET", "/api/v2/dags/crm360_daily/dagRuns/rest_api_run")
    assert day_one["state"] == "success"

    # one run at a time: each day's loads must follow the previous day's
    backfill = call(base, "POST", "/api/v2/backfills", {
        "dag_id": "crm360_daily", "from_date": "2026-11-02T00:00:00Z",
        "to_date": "2026-11-03T00:00:00Z", "max_active_runs": 1, "reprocess_behavior": "none",
    })  # fmt: skip

    def backfill_done():
        runs = call(base, "GET", "/api/v2/dags/crm360_daily/dagRuns")["dag_runs"]
        filled = [r for r in runs if r["run_type"] == "backfill"]
        if len(filled) == 2 and all(r["state"] in ("success", "failed") for r in filled):
            return filled
        return None

    filled = wait_for("the backfill's two runs", backfill_done, 900, interval=5)
    wait_for("the audience runs to finish", lambda: idle(base), 300, interval=5)
    assert backfill["max_active_runs"] == 1
    assert sorted((r["logical_date"][:10], r["state"]) for r in filled) == [
        ("2026-11-02", "success"), ("2026-11-03", "success"),
    ], (logs / "scheduler.log").read_text()[-3000:]  # fmt: skip
    runs = call(base, "GET", "/api/v2/dags/crm360_daily/dagRuns")["dag_runs"]
    assert len(runs) == 3  # no scheduled run besides: the schedule ends on 11-03
    with connect(settings.warehouse, read_only=True) as con:
        as_of = con.execute("select distinct as_of_date from marts.customer_360").fetchall()
    assert as_of == [(date(2026, 11, 3),)]

    # the same three days run one after the other, each with the as-of date of its run
    reference = make_settings(tmp_path_factory.mktemp("daily"))
    generate_demo(reference.source_dir, customers=300, seed=21, as_of=date(2026, 11, 3))
    for day in (date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 3)):
        at = datetime.combine(day, time(), tzinfo=UTC)
        for source in SOURCES:
            pipeline.ingest_source(source, f"daily-{day}", at, reference)
        pipeline.build_staging(day, reference)
        pipeline.resolve_identities(day, f"daily-{day}", reference)
        pipeline.erase_personal_data(day, f"daily-{day}", reference)
        pipeline.build_marts(day, reference)

    backfilled, daily = mart_rows(settings.warehouse), mart_rows(reference.warehouse)
    assert set(backfilled) == set(daily)
    assert [t for t in sorted(daily) if backfilled[t] != daily[t]] == []
