"""Failure notifications for the DAGs: always logged; posted to a webhook when one is configured.

The webhook URL is the environment variable `CRM360_ALERT_WEBHOOK` or the Airflow Connection
`crm360_alerts` (`AIRFLOW_CONN_CRM360_ALERTS`, an http(s) URI). The message is JSON with a
`text` field (Slack and Teams incoming webhooks display it) and the run's details. A failing
webhook is logged and never hides the task's own failure.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.request
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)


def alert_webhook() -> str | None:
    url = os.environ.get("CRM360_ALERT_WEBHOOK") or os.environ.get("AIRFLOW_CONN_CRM360_ALERTS")
    if url and url.startswith(("http://", "https://")):
        return url
    return None


def failure_message(context: dict[str, Any]) -> dict[str, Any]:
    ti = context["task_instance"]
    exception = context.get("exception")
    details = {
        "dag_id": ti.dag_id,
        "task_id": ti.task_id,
        "run_id": context.get("run_id"),
        "try_number": ti.try_number,
        "error": f"{type(exception).__name__}: {exception}" if exception else None,
    }
    details["text"] = (
        f"crm360: task {ti.dag_id}.{ti.task_id} failed (run {details['run_id']}, "
        f"try {ti.try_number}): {details['error']}"
    )
    return details


def on_task_failure(context: dict[str, Any]) -> None:
    """Airflow on_failure_callback."""
    message = failure_message(context)
    log.error(message["text"])
    url = alert_webhook()
    if not url:
        return
    request = urllib.request.Request(
        url,
        data=json.dumps(message, ensure_ascii=False).encode("utf-8"),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - configured URL
            pass
    except Exception as exc:  # noqa: BLE001 - an alert failure must not mask the task failure
        # the webhook's URL is its secret: name the host only
        log.warning("could not post the failure alert to %s: %s", urlsplit(url).netloc, exc)
