"""Every DAG imports cleanly, quickly, and has the tasks, edges and safety settings we expect."""

from __future__ import annotations

import time

import pytest

from crm360.settings import PROJECT_ROOT

INGEST = ["crm", "shop", "support", "web", "email", "social", "spend"]
EXPECTED_EDGES = {
    "crm360_daily": {
        *{(f"ingest_{a}", f"ingest_{b}") for a, b in zip(INGEST, INGEST[1:], strict=False)},
        ("ingest_spend", "check_sources"),
        ("check_sources", "dbt_staging"),
        ("dbt_staging", "resolve_identities"),
        ("resolve_identities", "erase_personal_data"),
        ("erase_personal_data", "dbt_build"),
        ("dbt_build", "quality_gate"),
        ("quality_gate", "publish_marts"),
        ("publish_marts", "run_report"),
    },
    "crm360_audiences": {("export_audiences", "run_report")},
}


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    started = time.monotonic()
    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    bag.parse_seconds = time.monotonic() - started
    return bag


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == set(EXPECTED_EDGES)


@pytest.mark.parametrize("dag_id", sorted(EXPECTED_EDGES))
def test_tasks_and_edges(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    edges = {(up, task.task_id) for task in dag.tasks for up in task.upstream_task_ids}
    assert edges == EXPECTED_EDGES[dag_id]
    assert {t.task_id for t in dag.tasks} == {n for edge in edges for n in edge}


@pytest.mark.parametrize("dag_id", sorted(EXPECTED_EDGES))
def test_no_cycles(dagbag, dag_id):
    dagbag.dags[dag_id].check_cycle()  # raises on a cycle


@pytest.mark.parametrize("dag_id", sorted(EXPECTED_EDGES))
def test_safety_settings(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert dag.catchup is False
    assert dag.tags and dag.doc_md
    assert dag.max_active_runs == 1  # DuckDB has one writer
    for task in dag.tasks:
        assert task.owner == "data-eng"
        assert task.execution_timeout is not None
        assert task.pool == "warehouse_writer"
        assert task.on_failure_callback
        # a failed quality check is data, not a transient error: it must not be retried
        expected = 0 if task.task_id == "quality_gate" else 2
        assert task.retries == expected, task.task_id
        # nor a broken contract or invalid configuration, in any task
        assert type(task.retry_policy).__name__ == "PermanentErrorsFail", task.task_id
        # whatever a task creates is private (files 0600, folders 0700)
        assert [c.__name__ for c in task.on_execute_callback] == ["_private_files"], task.task_id


def test_every_source_loads_whatever_the_others_did_and_a_gate_stands_before_dbt(dagbag):
    dag = dagbag.dags["crm360_daily"]
    for source in INGEST:
        # still one after another (one writer), but not only after the earlier ones succeeded
        assert dag.get_task(f"ingest_{source}").trigger_rule == "all_done", source
    gate = dag.get_task("check_sources")
    assert gate.trigger_rule == "all_done"
    assert dag.get_task("dbt_staging").trigger_rule == "all_success"
    assert dag.get_task("dbt_staging").upstream_task_ids == {"check_sources"}


def test_the_source_gate_stops_at_a_required_source_and_lets_optional_ones_go_stale():
    from crm360.report import RequiredSourceFailed, check_sources, source_errors

    results = {"crm": {"loads": []}, "support": None, "web": None, "spend": {"loads": []}}
    errors = {"support": "SourceApiError: http://127.0.0.1:9/tickets: gave up after 6 attempts"}
    failed = source_errors(results, results.get, errors.get)
    assert failed == {
        "support": errors["support"],
        "web": "did not finish (no error recorded)",
    }
    assert check_sources({}, optional=()) == {"stale_sources": {}}
    assert check_sources(failed, optional={"support", "web"}) == {"stale_sources": failed}
    with pytest.raises(RequiredSourceFailed, match=r"web: did not finish") as raised:
        check_sources(failed, optional={"support"})
    assert "support" not in str(raised.value)
    assert "CRM360_OPTIONAL_SOURCES" in str(raised.value)
    from crm360.pipeline import is_permanent

    assert is_permanent(raised.value)  # the source's task had its retries: this is not retried


def test_optional_sources_setting(monkeypatch):
    from crm360.settings import SettingError, optional_sources

    monkeypatch.delenv("CRM360_OPTIONAL_SOURCES", raising=False)
    assert optional_sources() == frozenset()  # by default every source is required
    monkeypatch.setenv("CRM360_OPTIONAL_SOURCES", " support, social ,")
    assert optional_sources() == {"support", "social"}
    monkeypatch.setenv("CRM360_OPTIONAL_SOURCES", "support,helpdesk")
    with pytest.raises(SettingError, match="unknown source.*helpdesk.*the sources are crm, shop"):
        optional_sources()


def test_a_failing_ingest_records_its_error_and_still_fails():
    from crm360.assets import SOURCE_ERROR_KEY, source_error_recorded

    class TaskInstance:
        pushed: dict = {}

        def xcom_push(self, key, value):
            self.pushed[key] = value

    ti = TaskInstance()
    with pytest.raises(ConnectionRefusedError), source_error_recorded(ti):
        raise ConnectionRefusedError("[Errno 111] Connection refused\nmore detail")
    assert ti.pushed == {SOURCE_ERROR_KEY: "ConnectionRefusedError: [Errno 111] Connection refused"}
    with pytest.raises(RuntimeError), source_error_recorded(ti):
        raise RuntimeError("postgresql://crm:s3cret@db.internal/shop: connection refused")
    assert ti.pushed[SOURCE_ERROR_KEY] == (
        "RuntimeError: postgresql://crm:***@db.internal/shop: connection refused"
    )


def test_contract_and_configuration_errors_fail_at_once_others_are_retried():
    from airflow.sdk import RetryAction

    from crm360.assets import PermanentErrorsFail
    from ingestion.contracts import ContractError

    class LoaderSaysPermanent(RuntimeError):
        permanent = True

    def decide(exc: Exception) -> RetryAction:
        return PermanentErrorsFail().evaluate(exc, try_number=1, max_tries=2).action

    missing = ContractError("crm/contacts_20261024.csv: required column(s) contact_id missing")
    assert decide(missing) == RetryAction.FAIL
    assert decide(LoaderSaysPermanent("bad sources config")) == RetryAction.FAIL
    # transient: the task's retries apply
    assert decide(ConnectionResetError("the helpdesk API closed the connection")) == (
        RetryAction.DEFAULT
    )
    assert decide(OSError("Could not set lock on file crm360.duckdb")) == RetryAction.DEFAULT
    # dbt: failed data tests are the data's verdict; a model that errored may be transient
    from crm360.dbt import DbtDataTestFailed, DbtError

    assert decide(DbtDataTestFailed("relationships_stg_shop__orders: Got 3 results")) == (
        RetryAction.FAIL
    )
    assert decide(DbtError("customer_rfm: IO Error: could not set lock")) == RetryAction.DEFAULT


def test_published_marts_schedule_the_audience_export(dagbag):
    from crm360.assets import PUBLISHED_MARTS

    publish = dagbag.dags["crm360_daily"].get_task("publish_marts")
    assert PUBLISHED_MARTS in publish.outlets
    # the daily DAG exports nothing itself: the audience DAG runs on the Asset event
    assert "export_audiences" not in dagbag.dags["crm360_daily"].task_ids
    audiences = dagbag.dags["crm360_audiences"]
    assert type(audiences.timetable).__name__ == "AssetTriggeredTimetable"
    assert [a.name for a in audiences.timetable.asset_condition.objects] == [PUBLISHED_MARTS.name]


def test_dag_parsing_is_fast(dagbag):
    # nothing heavy at import time: no DB connections, no dbt parse
    assert dagbag.parse_seconds < 10
