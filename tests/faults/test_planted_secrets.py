"""Secrets are never stored or logged: planted secrets, one real daily run, every file searched.

The run reads the shop from PostgreSQL through `AIRFLOW_CONN_CRM360_SHOP`, whose URL carries a
planted password; the helpdesk through `AIRFLOW_CONN_CRM360_SUPPORT_API`, whose URL carries a
planted `api_token` (it loaded yesterday's tickets outside Airflow; today it refuses the token
with HTTP 401 and repeats it in its answer, as real APIs do); and a failure alert goes to
`CRM360_ALERT_WEBHOOK`, a URL whose path is its key, on a closed port. The helpdesk's failure
fails `ingest_support`, which posts the alert, which fails too; the helpdesk is optional, so
the marts are still built, checked and published, and the audiences exported.

Then every file the runs wrote is searched for each planted secret: the warehouse and its
published copy (every column of every table, through SQL, and the raw bytes), the audience
exports, dbt's target folder, the Great Expectations folder (Data Docs, uncommitted
validations), and all of AIRFLOW_HOME: the metadata database (XCom included, through SQL and
raw bytes), the task logs and the `airflow dags test` output. None may hold one.
"""

from __future__ import annotations

import gzip
import json
import re
import socket
import sqlite3
import threading
from datetime import UTC, date, datetime, timedelta
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

import pytest
from conftest import use_settings
from postgres_server import copy_to_postgres, postgres_server

from crm360 import pipeline
from crm360.cli import AUDIENCES_DAG_ID, execute_dag
from crm360.demo import support_api
from crm360.demo.generator import generate_demo
from crm360.notify import on_task_failure
from crm360.redact import in_airflow_task, redact_secrets, url_secrets
from crm360.warehouse import connect
from ingestion.config import SourceConfig, resolve_url
from ingestion.support import SourceApiRefused, fetch_tickets

AS_OF = date(2026, 11, 1)
PASSWORD = "Pl4nted-Pw-7c1e94d2"
TOKEN = "tok-planted-5b08f3aa61"
HOOK_KEY = "B0PLANTED/hook-planted-e2d7c950"
SECRETS = (PASSWORD, TOKEN, HOOK_KEY)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Helpdesk:
    """The demo helpdesk API on 127.0.0.1 that, once `refuse` is set, answers HTTP 401 and
    repeats the token it was sent, as many real APIs do."""

    def __init__(self, tickets: Path) -> None:
        self.refuse = False
        self.paths: list[str] = []
        base = support_api._handler(*support_api._load(tickets), support_api.Faults(), self.paths)
        helpdesk = self

        class Handler(base):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if helpdesk.refuse:
                    helpdesk.paths.append(self.path)
                    token = re.search(r"api_token=([^&]*)", self.path)
                    self._send(401, {"error": f"api_token {token and token[1]} has expired"})
                    return
                super().do_GET()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Helpdesk:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def _forms(secret: str) -> list[bytes]:
    """The secret as written, percent-encoded and in JSON, as bytes in UTF-8."""
    texts = {secret, quote(secret, safe=""), json.dumps(secret)[1:-1]}
    return [t.encode("utf-8") for t in texts]


def _leaks_in_bytes(data: bytes) -> set[str]:
    return {s for s in SECRETS if any(form in data for form in _forms(s))}


def _file_leaks(path: Path) -> set[str]:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data += gzip.decompress(data)
    return _leaks_in_bytes(data)


def _pattern() -> str:
    return "|".join(re.escape(form.decode()) for s in SECRETS for form in _forms(s))


def _duckdb_leaks(con) -> list[str]:
    """Every column of every table and view holding a secret (`schema.table.column`)."""
    found = []
    columns = con.execute(
        "select table_schema, table_name, list(column_name order by ordinal_position) "
        "from information_schema.columns group by all order by all"
    ).fetchall()
    for schema, table, names in columns:
        checks = ", ".join(
            f'count(*) filter (where regexp_matches(cast("{c}" as varchar), $pattern))'
            for c in names
        )
        counts = con.execute(
            f'select {checks} from "{schema}"."{table}"', {"pattern": _pattern()}
        ).fetchone()
        found += [f"{schema}.{table}.{c}" for c, n in zip(names, counts, strict=True) if n]
    return found


def _duckdb_file_leaks(path: Path) -> list[str]:
    with connect(path, read_only=True) as con:
        return _duckdb_leaks(con)


def _parquet_leaks(path: Path) -> list[str]:
    import duckdb

    with duckdb.connect() as con:
        con.execute(f"create view exported as select * from read_parquet('{path}')")
        return _duckdb_leaks(con)


def _sqlite_leaks(path: Path) -> list[str]:
    """Every text or blob value of every table holding a secret (`table.column`)."""
    found = []
    with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as db:
        tables = [t for (t,) in db.execute("select name from sqlite_master where type = 'table'")]
        for table in tables:
            names = [row[1] for row in db.execute(f'pragma table_info("{table}")')]
            for row in db.execute(f'select * from "{table}"'):
                for name, value in zip(names, row, strict=True):
                    if isinstance(value, str):
                        value = value.encode("utf-8")
                    if isinstance(value, bytes) and _leaks_in_bytes(value):
                        found.append(f"{table}.{name}")
    return sorted(set(found))


@pytest.fixture
def planted_run(tmp_path, monkeypatch):
    """The daily DAG run once with the planted secrets, then the audience export; yields
    (settings, daily run, audience run, helpdesk request paths, root of all they wrote)."""
    settings = use_settings(monkeypatch, tmp_path)
    generate_demo(settings.source_dir, customers=120, seed=17, as_of=AS_OF)
    with postgres_server() as pg_url:
        copy_to_postgres(settings.source_dir / "shop" / "orders.sqlite", pg_url)
        (settings.source_dir / "shop" / "orders.sqlite").unlink()  # only PostgreSQL remains
        with Helpdesk(settings.source_dir / "support" / "tickets.jsonl") as helpdesk:
            for name, value in {
                "AIRFLOW_CONN_CRM360_SHOP": pg_url.replace("postgres@", f"postgres:{PASSWORD}@"),
                "AIRFLOW_CONN_CRM360_SUPPORT_API": f"{helpdesk.url}/?api_token={TOKEN}",
                "CRM360_ALERT_WEBHOOK": f"http://127.0.0.1:{_closed_port()}/services/{HOOK_KEY}",
            }.items():
                monkeypatch.setenv(name, str(value))
            for name in ("CRM360_SOURCES_CONFIG", "AIRFLOW_CONN_CRM360_ALERTS"):
                monkeypatch.delenv(name, raising=False)
            # yesterday the helpdesk took the token (read outside Airflow, as `crm360` would)
            yesterday = datetime.combine(AS_OF - timedelta(days=1), datetime.min.time(), UTC)
            earlier = pipeline.ingest_source("support", "yesterday", yesterday, settings)
            assert sum(load["rows_loaded"] for load in earlier["loads"]) > 0
            # today it refuses it: ingest_support fails, and the alert is posted (and fails)
            helpdesk.refuse = True
            monkeypatch.setenv("CRM360_OPTIONAL_SOURCES", "support")
            result = execute_dag(settings, AS_OF, airflow_home=tmp_path / "airflow")
            # and the audiences the published marts are exported to (their Asset's DAG)
            audiences = execute_dag(settings, AS_OF, AUDIENCES_DAG_ID, tmp_path / "airflow")
    yield settings, result, audiences, helpdesk.paths, tmp_path


@pytest.mark.slow
def test_planted_secrets_appear_in_no_file_the_run_writes(planted_run):
    settings, result, audiences, helpdesk_paths, root = planted_run
    log = result.log_file.read_text(encoding="utf-8", errors="replace")

    # the secrets were used: the shop read from PostgreSQL, the helpdesk was sent the token,
    # the helpdesk's refusal failed its task, and the alert was tried and failed
    states = {task["task_id"]: task["state"] for task in result.tasks}
    assert result.ok, log[-4000:]
    assert states["ingest_shop"] == "success" and states["publish_marts"] == "success"
    assert states["ingest_support"] == "failed"
    assert all(f"api_token={TOKEN}" in path for path in helpdesk_paths)
    assert len(helpdesk_paths) >= 2  # yesterday's pages and today's refused request
    logs = [p for p in root.rglob("*") if p.is_file() and (p.suffix == ".log" or "logs" in p.parts)]
    every_log = "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in logs)
    assert "could not post the failure alert to 127.0.0.1:" in every_log
    assert "has expired" in every_log  # the helpdesk's answer is in the task log, masked
    with connect(settings.warehouse, read_only=True) as con:
        locations = dict(
            con.execute(
                "select source, any_value(source_location) from raw._loads group by all"
            ).fetchall()
        )
        report = json.loads(
            con.execute(
                "select report from ops.run_reports where run_id = ?", [result.run["run_id"]]
            ).fetchone()[0]
        )
    assert locations["shop"].startswith("postgresql://postgres:")  # read from PostgreSQL
    assert "/tickets?api_token=" in locations["support"]
    assert report["stale_sources"]["support"].startswith("SourceApiRefused: ")
    assert audiences.ok, audiences.log_file.read_text(encoding="utf-8")[-4000:]
    assert list(settings.export_dir.rglob("*.csv")), "no audience was exported"

    # no secret in any file the run wrote, nor in any value of any database it wrote
    written = [p for p in root.rglob("*") if p.is_file() and settings.source_dir not in p.parents]
    assert any(p.suffix == ".duckdb" for p in written)
    assert any(p.name == "airflow.db" for p in written)
    assert any(settings.gx_dir in p.parents and p.suffix == ".html" for p in written)
    leaks = {}
    for path in written:
        found = sorted(_file_leaks(path))
        if path.suffix == ".duckdb" and not path.name.endswith(".tmp"):
            found += _duckdb_file_leaks(path)
        elif path.suffix == ".parquet":
            found += _parquet_leaks(path)
        elif path.name == "airflow.db":
            found += _sqlite_leaks(path)
        if found:
            leaks[str(path.relative_to(root))] = found
    assert not leaks, f"planted secrets found: {leaks}"
    # masked where they were, the rest of the URL and message kept
    assert locations["shop"].startswith("postgresql://postgres:***@127.0.0.1:")
    assert "/tickets?api_token=***&updated_since=" in locations["support"]
    assert 'HTTP 401: {"error": "api_token *** has expired"}' in report["stale_sources"]["support"]


# The pieces the run relies on, each on its own (fast).


def test_the_secret_parts_of_a_url_are_found_and_masked_in_any_text():
    url = f"postgresql://crm:{quote(PASSWORD)}@db:5432/shop?sslmode=require&api_key=k-{TOKEN}"
    assert url_secrets(url) == [PASSWORD, f"k-{TOKEN}"]
    text = f"login failed for {PASSWORD}; key k-{TOKEN} unknown"
    assert redact_secrets(text, url_secrets(url)) == "login failed for ***; key *** unknown"
    assert url_secrets("https://help.example.com/api?page=2") == []


def test_outside_airflow_a_connection_is_read_from_the_environment(monkeypatch, tmp_path):
    block = SourceConfig(url="sqlite:///{source_dir}/shop.sqlite", connection_id="crm360_shop")
    monkeypatch.delenv("AIRFLOW_CONN_CRM360_SHOP", raising=False)
    assert resolve_url(block, tmp_path) == f"sqlite:///{tmp_path}/shop.sqlite"
    monkeypatch.setenv("AIRFLOW_CONN_CRM360_SHOP", f"postgresql://crm:{PASSWORD}@db/shop")
    assert resolve_url(block, tmp_path) == f"postgresql://crm:{PASSWORD}@db/shop"
    assert not in_airflow_task()


def test_a_helpdesk_token_in_the_base_url_is_sent_and_never_repeated(tmp_path):
    tickets = tmp_path / "tickets.jsonl"
    tickets.write_text(
        '{"ticket_id": "T1", "updated_at": "2026-10-31T10:00:00+00:00"}\n', encoding="utf-8"
    )
    since, until = datetime(2026, 10, 31, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
    with Helpdesk(tickets) as helpdesk:
        base = f"{helpdesk.url}/?api_token={TOKEN}"
        assert [t["ticket_id"] for t in fetch_tickets(base, since, until)] == ["T1"]
        assert helpdesk.paths[0].startswith(f"/tickets?api_token={TOKEN}&updated_since=")
        helpdesk.refuse = True
        with pytest.raises(SourceApiRefused) as refused:
            fetch_tickets(base, since, until)
    assert TOKEN not in str(refused.value)
    assert 'HTTP 401: {"error": "api_token *** has expired"}' in str(refused.value)


def test_a_failed_alert_names_the_webhook_host_only(monkeypatch, caplog):
    hook = f"http://alerts:{PASSWORD}@127.0.0.1:{_closed_port()}/services/{HOOK_KEY}"
    monkeypatch.setenv("CRM360_ALERT_WEBHOOK", hook)
    ti = SimpleNamespace(dag_id="crm360_daily", task_id="ingest_shop", try_number=1)
    on_task_failure({"task_instance": ti, "run_id": "r1", "exception": RuntimeError("x")})
    assert "could not post the failure alert to 127.0.0.1:" in caplog.text
    assert not {s for s in SECRETS if s in caplog.text}
