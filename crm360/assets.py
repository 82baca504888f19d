"""What the DAGs share (imported by the DAG files only): Assets and task defaults.

`PUBLISHED_MARTS` is updated by `crm360_daily.publish_marts` after the quality gate passed and
the analysts' read-only copy was swapped; `crm360_audiences` is scheduled on it. Each event's
`extra` carries the run that built the marts: `run_id`, `as_of_date` and `quality_status`.
"""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import Asset

from crm360.notify import on_task_failure

PUBLISHED_MARTS = Asset(name="crm360_published_marts", uri="crm360://warehouse/published/marts")


def task_defaults(execution_timeout: timedelta) -> dict:
    """default_args of every DAG: retries with exponential backoff for transient failures, a
    timeout, the one-slot pool of the tasks that write DuckDB, and the failure notification."""
    return {
        "owner": "data-eng",
        "retries": 2,
        "retry_delay": timedelta(seconds=int(os.environ.get("CRM360_RETRY_DELAY_SECONDS", "120"))),
        "retry_exponential_backoff": True,
        "execution_timeout": execution_timeout,
        "pool": "warehouse_writer",
        "on_failure_callback": on_task_failure,
    }
