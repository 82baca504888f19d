"""
### crm360_daily

**Purpose.** The daily customer-360 build: load every source system (CRM, shop database,
helpdesk API, web analytics, e-mail, social, marketing spend) into the DuckDB `raw` schema,
build the staging models with dbt, resolve identities (one stable customer id per person:
deterministic rules, then Splink), erase the people who asked for it, build the mart models
with dbt, validate the marts with Great Expectations, and only then publish the marts to the
analysts' read-only copy (personal data masked) and the exports' private copy. Publishing
updates the Asset `crm360_published_marts`, on which `crm360_audiences` is scheduled.

**Notes.**
- The end of the run's data interval is the marts' as-of date. With Airflow 3's default cron
  timetable that is the logical date: the run at 2026-11-01 00:00 UTC describes the customers
  as of that moment (orders before it).
- The start date is `CRM360_START_DATE` (default 1970-01-01), so that a history of any age can
  be run at its own dates (`crm360 run --date 1998-06-30`, a backfill of 1997-98). Catch-up is
  off: an early start date creates no scheduled runs by itself.
- A source that breaks its contract, or invalid configuration, fails its task at once (the
  retry policy of `crm360.assets`): retries are for transient errors.
- One source's failure does not stop the others: every ingest task runs whatever the earlier
  ones did (trigger rule `all_done`), still one after another. `check_sources` then stops the
  run before dbt when a required source failed, naming it; a source named in
  `CRM360_OPTIONAL_SOURCES` may fail, and the run report lists it under stale sources.
- Every file a task creates is private to the owner (0600, folders 0700).
- A critical data-quality failure fails `quality_gate`; `publish_marts` then never runs, the
  Asset is not updated, no audience is exported and the previous exports stay as they were.
- Tasks that write the warehouse run one after another and in the one-slot pool
  `warehouse_writer` (DuckDB allows one writer).
- `erase_personal_data` anonymises everyone with a new deletion request in every table and
  scrubs them out of earlier exports, Data Docs and logs, before the marts are built (see
  docs/privacy.md).
- `publish_marts` swaps the analysts' read-only copy (warehouse/published/, personal data
  masked unless `CRM360_PUBLISHED_PII=plain`) and the exports' private copy
  (warehouse/activation/) to this run's state, only after the gate passed.
- `run_report` runs after every run, failed or not, and stores `ops.run_reports`.
- `CRM360_DBT_TASKS=models` renders `dbt_staging` and `dbt_build` as task groups with one
  task per dbt node (astronomer-cosmos, from dbt's manifest), so a failed model retries alone;
  the default `build` runs each layer as one `dbt build` (see docs/airflow.md for the choice).
- A failed task is logged and, when `CRM360_ALERT_WEBHOOK` is set, posted to that webhook.
- Paths come from `CRM360_*` environment variables (see README, Settings).
"""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import TriggerRule, chain, dag, get_current_context, task, teardown

from crm360.assets import (
    PUBLISHED_MARTS,
    check_ingested_sources,
    dag_start_date,
    daily_end_date,
    source_error_recorded,
    task_defaults,
)
from crm360.dbt_tasks import dbt_tasks_mode
from ingestion import SOURCES

# "@daily" by default; "none" leaves runs to triggers (REST API, `airflow dags trigger`, tests)
SCHEDULE = os.environ.get("CRM360_DAILY_SCHEDULE", "@daily")
# the earliest as-of date: CRM360_START_DATE, by default 1970-01-01 (any history at its dates)
START_DATE = dag_start_date()
# the last date the schedule creates runs for (e.g. a replay environment): CRM360_DAILY_END_DATE
END_DATE = daily_end_date()
# "build": one `dbt build` task per layer; "models": one task per dbt node (cosmos)
DBT_TASKS = dbt_tasks_mode()


def _run_id() -> str:
    return get_current_context()["run_id"]


def _macros() -> dict:
    if DBT_TASKS != "models":
        return {}
    from crm360.dbt_tasks import template_macros

    return template_macros()


@dag(
    dag_id="crm360_daily",
    schedule=None if SCHEDULE.lower() == "none" else SCHEDULE,
    start_date=START_DATE,
    end_date=END_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=task_defaults(execution_timeout=timedelta(hours=2)),
    tags=["crm360", "daily"],
    doc_md=__doc__,
    user_defined_macros=_macros(),
)
def crm360_daily():
    @task(trigger_rule=TriggerRule.ALL_DONE)
    def ingest(source: str) -> dict:
        """Runs whatever the earlier sources did; a failure leaves its error for check_sources."""
        from crm360 import pipeline

        context = get_current_context()
        with source_error_recorded(context["ti"]):
            return pipeline.ingest_source(source, _run_id(), context["data_interval_end"])

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def check_sources() -> dict:
        """Stops the run here when a required source failed; optional ones are flagged stale."""
        return check_ingested_sources(get_current_context()["ti"])

    @task
    def dbt_staging() -> dict:
        from crm360 import pipeline

        return pipeline.build_staging(get_current_context()["data_interval_end"].date())

    @task
    def resolve_identities() -> dict:
        from crm360 import pipeline

        as_of = get_current_context()["data_interval_end"].date()
        return pipeline.resolve_identities(as_of, _run_id())

    @task
    def erase_personal_data() -> dict:
        """Anonymises everyone with a new deletion request, before the marts are built."""
        from crm360 import pipeline

        as_of = get_current_context()["data_interval_end"].date()
        return pipeline.erase_personal_data(as_of, _run_id())

    @task
    def dbt_build() -> dict:
        from crm360 import pipeline

        return pipeline.build_marts(get_current_context()["data_interval_end"].date())

    @task(retries=0)
    def quality_gate() -> dict:
        from crm360 import pipeline

        return pipeline.check_quality(_run_id())

    @task(outlets=[PUBLISHED_MARTS])
    def publish_marts(quality: dict) -> dict:
        """Swap the analysts' copy; the Asset event tells crm360_audiences which run it is."""
        from crm360 import pipeline

        context = get_current_context()
        result = pipeline.publish_marts()
        context["outlet_events"][PUBLISHED_MARTS].extra = {
            "run_id": context["run_id"],
            "as_of_date": context["data_interval_end"].date().isoformat(),
            "quality_status": quality["status"],
        }
        return result

    @teardown
    def run_report() -> dict:
        """Runs after every run, failed or not; does not change the run's state."""
        from crm360 import pipeline

        context = get_current_context()
        ti = context["ti"]
        return pipeline.report_run(
            context["run_id"],
            context["dag"].dag_id,
            context["data_interval_end"].date(),
            lambda task_id: _pull(ti, context, task_id),
        )

    # one writer at a time: the sources load one after another, then dbt
    loads = [ingest.override(task_id=f"ingest_{source}")(source) for source in SOURCES]
    staging, marts = _dbt_layers(dbt_staging, dbt_build)
    chain(*loads, check_sources(), staging, resolve_identities(), erase_personal_data(), marts)
    quality = quality_gate()
    marts >> quality >> publish_marts(quality) >> run_report()


def _dbt_layers(dbt_staging, dbt_build):
    """The staging and mart layers: one task each, or a cosmos task group each."""
    if DBT_TASKS != "models":
        return dbt_staging(), dbt_build()
    from crm360.dbt_tasks import dbt_node_group

    return (
        dbt_node_group("dbt_staging", select=["tag:staging"]),
        dbt_node_group("dbt_build", exclude=["tag:staging"]),
    )


def _pull(ti, context, task_id: str):
    """A step's result for the run report: its XCom, or a dbt task group's summary."""
    if DBT_TASKS == "models" and task_id in ("dbt_staging", "dbt_build"):
        return _group_summary(ti, context, task_id)
    return ti.xcom_pull(task_ids=task_id)


def _group_summary(ti, context, group_id: str) -> dict | None:
    """The report's dbt figures in model mode, from the group's finished tasks: how many, by
    state, and their summed duration. None unless all succeeded, so the report names the group
    where the run stopped."""
    crumbs = [
        c for c in ti.get_task_breadcrumbs(context["dag"].dag_id, context["run_id"])
        if c["task_id"].startswith(group_id + ".")
    ]  # fmt: skip
    counts: dict[str, int] = {}
    for crumb in crumbs:
        counts[str(crumb["state"])] = counts.get(str(crumb["state"]), 0) + 1
    if not crumbs or set(counts) - {"success", "skipped"}:
        return None
    seconds = round(sum(c["duration"] or 0 for c in crumbs), 1)
    return {"mode": "models", "nodes": len(crumbs), "statuses": counts, "seconds": seconds}


crm360_daily()
