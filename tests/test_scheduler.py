"""The DAG on a real Airflow: api-server, scheduler and dag-processor on 127.0.0.1, a run
triggered through the REST API, waited for, and its outputs checked."""

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


@pytest.fixture
def airflow_services(tmp_path):
    settings = make_settings(tmp_path)
    generate_demo(settings.source_dir, customers=300, seed=21, as_of=date(2026, 11, 1))
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
        "CRM360_DAILY_SCHEDULE": "none",
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
