"""Airflow Assets of the pipeline (imported by the DAG files only).

`PUBLISHED_MARTS` is updated by `crm360_daily.publish_marts` after the quality gate passed and
the analysts' read-only copy was swapped; `crm360_audiences` is scheduled on it. Each event's
`extra` carries the run that built the marts: `run_id`, `as_of_date` and `quality_status`.
"""

from __future__ import annotations

from airflow.sdk import Asset

PUBLISHED_MARTS = Asset(name="crm360_published_marts", uri="crm360://warehouse/published/marts")
