"""Failure alerts: always logged, posted as JSON to the configured webhook."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from crm360.notify import on_task_failure


@pytest.fixture
def webhook():
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()


def context():
    ti = SimpleNamespace(dag_id="crm360_daily", task_id="quality_gate", try_number=1)
    return {
        "task_instance": ti,
        "run_id": "manual__1",
        "exception": RuntimeError("quality gate failed"),
    }


def test_failure_is_posted_to_the_webhook(webhook, monkeypatch, caplog):
    url, received = webhook
    monkeypatch.setenv("CRM360_ALERT_WEBHOOK", url)
    on_task_failure(context())
    assert received == [
        {
            "dag_id": "crm360_daily",
            "task_id": "quality_gate",
            "run_id": "manual__1",
            "try_number": 1,
            "error": "RuntimeError: quality gate failed",
            "text": "crm360: task crm360_daily.quality_gate failed (run manual__1, try 1): "
            "RuntimeError: quality gate failed",
        }
    ]
    assert "crm360_daily.quality_gate failed" in caplog.text


def test_without_webhook_the_failure_is_only_logged(monkeypatch, caplog):
    monkeypatch.delenv("CRM360_ALERT_WEBHOOK", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_CRM360_ALERTS", raising=False)
    on_task_failure(context())
    assert "crm360_daily.quality_gate failed" in caplog.text


def test_unreachable_webhook_is_logged_not_raised(monkeypatch, caplog):
    monkeypatch.setenv("CRM360_ALERT_WEBHOOK", "http://127.0.0.1:9/hook")
    on_task_failure(context())
    assert "could not post the failure alert" in caplog.text
