"""CRM360_DBT_TASKS=models: one Airflow task per dbt node (astronomer-cosmos, from the manifest).

The graph mirrors dbt's, every node task keeps the DAG's safety settings, and a model that fails
once is retried alone: nothing else runs twice and the run ends in success.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sqlite3
from datetime import date

import pytest

from crm360.dbt import run_dbt
from crm360.settings import PROJECT_ROOT
from tests.conftest import make_settings

AS_OF = date(2026, 11, 1)
FLAKY_MODEL = "customer_rfm"


def _manifest(settings) -> dict:
    run_dbt(settings, ["parse"])
    return json.loads((settings.dbt_target_dir / "manifest.json").read_text(encoding="utf-8"))


def _nodes(manifest: dict, staging: bool) -> dict[str, dict]:
    return {
        uid: node
        for uid, node in manifest["nodes"].items()
        if node["resource_type"] in ("model", "seed", "snapshot")
        and ("staging" in node["tags"]) == staging
    }


def _task_id(group: str, node: dict) -> str:
    return f"{group}.{node['name']}_{node['resource_type']}_build"


@pytest.fixture(scope="module")
def model_mode(tmp_path_factory):
    """Settings whose dbt project is a copy (so a test can break a model), its manifest, and
    the environment that makes the DAG render one task per node."""
    root = tmp_path_factory.mktemp("models")
    project = root / "dbt_project"
    shutil.copytree(
        PROJECT_ROOT / "dbt_project", project,
        ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"),
    )  # fmt: skip
    settings = make_settings(root)
    settings = dataclasses.replace(settings, dbt_project_dir=project)
    env = {
        "CRM360_DBT_TASKS": "models",
        "CRM360_DBT_PROJECT_DIR": str(project),
        "CRM360_DBT_TARGET_DIR": str(settings.dbt_target_dir),
        "CRM360_RETRY_DELAY_SECONDS": "1",
    }
    return settings, env, root


@pytest.fixture
def model_dag(model_mode, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    settings, env, _ = model_mode
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    manifest = _manifest(settings)
    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    assert bag.import_errors == {}
    return bag.dags["crm360_daily"], manifest


def test_one_task_per_dbt_node_with_dbts_edges(model_dag):
    dag, manifest = model_dag
    dag.check_cycle()
    assert dag.tags and dag.catchup is False and dag.max_active_runs == 1
    for group, staging in (("dbt_staging", True), ("dbt_build", False)):
        nodes = _nodes(manifest, staging)
        tasks = {t.task_id for t in dag.tasks if t.task_id.startswith(group + ".")}
        assert tasks == {_task_id(group, node) for node in nodes.values()}
        # inside a group, a node task waits for exactly its dbt parents of the same group
        for node in nodes.values():
            task = dag.get_task(_task_id(group, node))
            parents = {
                _task_id(group, nodes[p]) for p in node["depends_on"].get("nodes", []) if p in nodes
            }
            assert task.upstream_task_ids & tasks == parents, task.task_id
            assert task.retries == 2 and task.pool == "warehouse_writer"
            assert task.owner == "data-eng" and task.on_failure_callback
            assert task.execution_timeout is not None
            # unit tests run in the test suite, not in the daily build
            assert task.env["DBT_EXCLUDE_RESOURCE_TYPES"] == "unit_test"
            # the as-of date as the layer builds pass it: in the environment, not a dbt var
            assert task.env["CRM360_AS_OF_DATE"] == "{{ data_interval_end.date().isoformat() }}"
            assert "as_of_date" not in task.vars
    # the layers keep their order around identity resolution
    roots = [t for t in dag.tasks if t.task_id.startswith("dbt_staging.") and not
             (t.upstream_task_ids & {x.task_id for x in dag.tasks if x.task_id.startswith("dbt_")})]  # fmt: skip
    assert roots and all("check_sources" in t.upstream_task_ids for t in roots)
    resolve = dag.get_task("resolve_identities")
    assert resolve.upstream_task_ids and all(
        u.startswith("dbt_staging.") for u in resolve.upstream_task_ids
    )
    assert all(u.startswith("dbt_build.") for u in dag.get_task("quality_gate").upstream_task_ids)


def test_an_unknown_mode_or_a_missing_manifest_is_a_clear_import_error(model_mode, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    _, env, root = model_mode
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CRM360_DBT_TARGET_DIR", str(root / "no_target"))
    errors = DagBag(dag_folder=str(PROJECT_ROOT / "dags")).import_errors
    (message,) = [v for k, v in errors.items() if k.endswith("crm360_daily.py")]
    assert "crm360 dbt-manifest" in message
    monkeypatch.setenv("CRM360_DBT_TASKS", "per-model")
    errors = DagBag(dag_folder=str(PROJECT_ROOT / "dags")).import_errors
    (message,) = [v for k, v in errors.items() if k.endswith("crm360_daily.py")]
    assert "expected one of build, models" in message


def test_a_model_that_fails_once_is_retried_alone(model_mode, monkeypatch):
    from crm360.cli import run_dag
    from crm360.demo.generator import generate_demo
    from crm360.warehouse import connect

    settings, env, root = model_mode
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    # a transient failure: the model's first attempt fails, leaving a marker; the retry passes
    marker = root / "first_attempt_seen.csv"
    model = next(settings.dbt_project_dir.glob(f"models/**/{FLAKY_MODEL}.sql"))
    hooks = [
        f"create or replace temp table flaky_seen as select count(*) as n from glob('{marker}')",
        f"copy (select 1 as seen) to '{marker}' (format csv)",
        "select error('injected transient failure') from flaky_seen where n = 0",
    ]
    model.write_text(
        "{{ config(pre_hook=" + json.dumps(hooks) + ") }}\n" + model.read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    _manifest(settings)
    generate_demo(settings.source_dir, customers=300, seed=11, as_of=AS_OF)

    ok, log_file = run_dag(settings, AS_OF, airflow_home=root / "airflow")
    assert ok, log_file.read_text(encoding="utf-8")[-4000:]
    assert marker.exists()

    with sqlite3.connect(root / "airflow" / "airflow.db") as db:
        tries = dict(
            db.execute(
                "select task_id, try_number from task_instance where dag_id = 'crm360_daily' "
                "and state = 'success'"
            ).fetchall()
        )
    flaky = f"dbt_build.{FLAKY_MODEL}_model_build"
    assert tries[flaky] == 2
    others = {t: n for t, n in tries.items() if t != flaky}
    assert len(others) > 40 and set(others.values()) == {1}  # nothing else ran twice

    with connect(settings.warehouse, read_only=True) as con:
        (report,) = con.execute(
            "select report from ops.run_reports where dag_id = 'crm360_daily'"
        ).fetchone()
        buyers = con.execute("select count(*) from marts.customer_rfm").fetchone()[0]
    report = json.loads(report)
    assert report["status"] == "success"
    assert report["dbt"]["mode"] == "models"
    assert report["dbt"]["statuses"] == {"success": report["dbt"]["nodes"]}
    assert report["stage_seconds"]["dbt_build"] > 0
    assert buyers > 0
