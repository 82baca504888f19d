"""What the DAGs share (imported by the DAG files only): Assets, dates and task defaults.

`PUBLISHED_MARTS` is updated by `crm360_daily.publish_marts` after the quality gate passed and
the analysts' read-only copy was swapped; `crm360_audiences` is scheduled on it. Each event's
`extra` carries the run that built the marts: `run_id`, `as_of_date` and `quality_status`.

Every source's ingest task runs whatever the earlier ones did; `check_ingested_sources`, between
ingestion and dbt, stops the run when a required source failed (see CRM360_OPTIONAL_SOURCES).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Asset, RetryDecision, RetryPolicy

from crm360.notify import on_task_failure
from crm360.settings import private_files

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


# The XCom in which a failing ingest task leaves its error for check_ingested_sources.
SOURCE_ERROR_KEY = "error"


_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://\S+")


def error_summary(exc: BaseException) -> str:
    """One line for the run report: the exception's type and the first line of its message,
    any URL in it without its credentials."""
    from crm360.redact import redact_url

    lines = str(exc).strip().splitlines()
    line = _URL.sub(lambda url: redact_url(url[0]), lines[0] if lines else "")
    return f"{type(exc).__name__}: {line}".rstrip(": ")[:500]


@contextmanager
def source_error_recorded(ti: Any) -> Iterator[None]:
    """Around an ingest task's work: an exception is recorded as the task's XCom
    `SOURCE_ERROR_KEY` (its summary) and raised again, so the task still fails and retries."""
    try:
        yield
    except Exception as exc:
        ti.xcom_push(key=SOURCE_ERROR_KEY, value=error_summary(exc))
        raise


def check_ingested_sources(ti: Any) -> dict:
    """The gate between ingestion and dbt: the sources whose ingest task failed, from their
    XComs; raises `crm360.report.RequiredSourceFailed` when one of them is required, else
    returns them as `stale_sources` ({source: error}) after making sure their raw tables
    exist (a source that never loaded has none), so the marts build without their new data."""
    from crm360.report import check_sources, source_errors
    from crm360.settings import load_settings, optional_sources
    from crm360.warehouse import connect
    from ingestion import SOURCES
    from ingestion.contracts import load_contract
    from ingestion.raw import ensure_raw_tables

    failed = source_errors(
        SOURCES,
        lambda source: ti.xcom_pull(task_ids=f"ingest_{source}"),
        lambda source: ti.xcom_pull(task_ids=f"ingest_{source}", key=SOURCE_ERROR_KEY),
    )
    result = check_sources(failed, optional_sources())
    if result["stale_sources"]:
        with connect(load_settings().warehouse) as con:
            for source in result["stale_sources"]:
                ensure_raw_tables(con, list(load_contract(source).values()))
    return result


def _private_files(context: Any) -> None:
    private_files()


def task_defaults(execution_timeout: timedelta) -> dict:
    """default_args of every DAG: retries with exponential backoff for transient failures (none
    for contract and configuration errors), a timeout, the one-slot pool of the tasks that write
    DuckDB, the failure notification, and private files (0600, folders 0700) for everything a
    task creates."""
    return {
        "owner": "data-eng",
        "retries": 2,
        "retry_delay": timedelta(seconds=int(os.environ.get("CRM360_RETRY_DELAY_SECONDS", "120"))),
        "retry_exponential_backoff": True,
        "retry_policy": PermanentErrorsFail(),
        "execution_timeout": execution_timeout,
        "pool": "warehouse_writer",
        "on_failure_callback": on_task_failure,
        # the umask of the task's process, and of dbt and any other child it starts
        "on_execute_callback": _private_files,
    }
