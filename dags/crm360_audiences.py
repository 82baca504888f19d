"""
### crm360_audiences

**Purpose.** Export every audience (`activation/audiences/*.yml`) for the marketing tools, each
time the daily run publishes new marts.

**Notes.**
- Scheduled on the Asset `crm360_published_marts`, which `crm360_daily.publish_marts`
  updates only after the quality gate passed. The files are read from the exports' private
  copy (warehouse/activation/, published with the analysts' masked one), i.e. exactly the
  state the gate validated, and carry that run's id.
- It always exports what that copy holds (the newest published run), whether started
  by an Asset event or by hand.
- Its start date is the daily DAG's (`CRM360_START_DATE`), so it exports for any as-of date
  the daily DAG ran.
- Its tasks are in the one-slot pool `warehouse_writer`: the run report is written to the
  warehouse.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from airflow.sdk import dag, get_current_context, task, teardown

from crm360.assets import PUBLISHED_MARTS, dag_start_date, task_defaults

log = logging.getLogger(__name__)


@dag(
    dag_id="crm360_audiences",
    schedule=[PUBLISHED_MARTS],
    start_date=dag_start_date(),
    catchup=False,
    max_active_runs=1,
    default_args=task_defaults(execution_timeout=timedelta(hours=1)),
    tags=["crm360", "activation"],
    doc_md=__doc__,
)
def crm360_audiences():
    @task
    def export_audiences() -> dict:
        from crm360 import pipeline

        events = get_current_context()["triggering_asset_events"][PUBLISHED_MARTS]
        marts = pipeline.published_marts_state()
        if events and events[-1].extra.get("run_id") != marts["run_id"]:
            log.info("marts of run %s were published since run %s's event; exporting those",
                     marts["run_id"], events[-1].extra.get("run_id"))  # fmt: skip
        result = pipeline.export_audiences(marts["run_id"], marts["quality"])
        return {**result, "marts": marts}

    @teardown
    def run_report() -> dict:
        """Runs after every run, failed or not; does not change the run's state."""
        from crm360 import pipeline

        context = get_current_context()
        return pipeline.report_audience_run(
            context["run_id"], context["ti"].xcom_pull(task_ids="export_audiences")
        )

    export_audiences() >> run_report()


crm360_audiences()
