"""Failure notifications for the DAGs: always logged; posted to a webhook when one is configured.

The webhook URL is the environment variable `CRM360_ALERT_WEBHOOK` or the Airflow Connection
`crm360_alerts` (`AIRFLOW_CONN_CRM360_ALERTS`, an http(s) URI; inside a task it is read through
Airflow, so a Connection kept in the metadata database or a secrets backend works too). The
message is JSON with a `text` field (Slack and Teams incoming webhooks display it) and the run's
details. A failing webhook is logged and never hides the task's own failure.

The URL is a secret (whoever has it can post to the channel; Slack's and Teams' carry their key
in the path): inside a task it is registered with Airflow's secrets masker, and the failure to
post it names its host only.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from crm360.redact import in_airflow_task, mask_in_airflow, redact_secrets, url_secrets

log = logging.getLogger(__name__)

ALERTS_CONNECTION = "crm360_alerts"


def alert_webhook() -> str | None:
    url = os.environ.get("CRM360_ALERT_WEBHOOK") or os.environ.get("AIRFLOW_CONN_CRM360_ALERTS")
    if not url and in_airflow_task():
        url = _connection_url(ALERTS_CONNECTION)
    if url and url.startswith(("http://", "https://")):
        mask_in_airflow(*_secret_parts(url))
        return url
    return None


def _connection_url(conn_id: str) -> str | None:
    """The Connection's URI read through Airflow's Task SDK, None when it is not defined."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = Connection.get(conn_id)
    except AirflowNotFoundException:
        return None
    return conn.get_uri()


def _secret_parts(url: str) -> list[str]:
    """What of a webhook URL is secret: all of it, its path and query (the key of Slack's and
    Teams' webhooks), its password and token values."""
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return [url, *([path] if len(path.strip("/")) > 3 else []), *url_secrets(url)]


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
        # the webhook's URL is its secret: name the host only, and never repeat the URL
        reason = redact_secrets(str(exc), _secret_parts(url))
        log.warning("could not post the failure alert to %s: %s", _host(url), reason)


def _host(url: str) -> str:
    """The webhook's host and port, without any user or password."""
    parts = urlsplit(url)
    try:
        return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
    except ValueError:  # a port that is not a number
        return str(parts.hostname)
