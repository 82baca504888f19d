"""What the DAGs share (imported by the DAG files only): Assets, dates and task defaults.

`PUBLISHED_MARTS` is updated by `crm360_daily.publish_marts` after the quality gate passed and
the analysts' read-only copy was swapped; `crm360_audiences` is scheduled on it. Each event's
`extra` carries the run that built the marts: `run_id`, `as_of_date` and `quality_status`.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Asset, RetryDecision, RetryPolicy

from crm360.notify import on_task_failure

PUBLISHED_MARTS = Asset(name="crm360_published_marts", uri="crm360://warehouse/published/marts")

START_DATE_ENV = "CRM360_START_DATE"
END_DATE_ENV = "CRM360_DAILY_END_DATE"
# Early enough for any purchase history a source system can date (the Unix epoch): with
# catchup off, an early start date creates no runs by itself, it only lets a run, a test run or
# a backfill have an old logical date.
DEFAULT_START_DATE = "1970-01-01"


def _date_setting(name: str, default: str | None) -> datetime | None:
    value = os.environ.get(name, "").strip() or default
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name} must be an ISO date such as 1997-01-01, not {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def dag_start_date() -> datetime:
    """Both DAGs' start date, the earliest logical (as-of) date they run:
    `CRM360_START_DATE` (ISO date, UTC), by default 1970-01-01."""
    return _date_setting(START_DATE_ENV, DEFAULT_START_DATE)


def daily_end_date() -> datetime | None:
    """`crm360_daily`'s end date, the last logical date it runs: `CRM360_DAILY_END_DATE`
    (ISO date, UTC), none by default."""
    return _date_setting(END_DATE_ENV, None)


class PermanentErrorsFail(RetryPolicy):
    """The retry policy of every task: an error no retry can fix (a source that breaks its
    contract, invalid configuration: `crm360.pipeline.is_permanent`) fails the task at once;
    any other error (network, a locked file) keeps the task's retries."""

    def evaluate(
        self, exception: BaseException, try_number: int, max_tries: int, context: Any = None
    ) -> RetryDecision:
        from crm360.pipeline import is_permanent

        if is_permanent(exception):
            return RetryDecision.fail(
                reason=f"{type(exception).__name__} is not retried: a retry cannot fix it"
            )
        return RetryDecision.default()


def task_defaults(execution_timeout: timedelta) -> dict:
    """default_args of every DAG: retries with exponential backoff for transient failures (none
    for contract and configuration errors), a timeout, the one-slot pool of the tasks that write
    DuckDB, and the failure notification."""
    return {
        "owner": "data-eng",
        "retries": 2,
        "retry_delay": timedelta(seconds=int(os.environ.get("CRM360_RETRY_DELAY_SECONDS", "120"))),
        "retry_exponential_backoff": True,
        "retry_policy": PermanentErrorsFail(),
        "execution_timeout": execution_timeout,
        "pool": "warehouse_writer",
        "on_failure_callback": on_task_failure,
    }
