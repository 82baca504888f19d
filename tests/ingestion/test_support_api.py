"""The helpdesk API client against the local demo server on 127.0.0.1."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

import ingestion.support as support
from crm360.demo.support_api import Faults, serve_tickets
from crm360.warehouse import connect
from ingestion.support import SourceApiError, fetch_tickets, get_json
from ingestion.watermarks import EPOCH

START = datetime(2026, 10, 1, tzinfo=UTC)


@pytest.fixture
def tickets_file(tmp_path):
    path = tmp_path / "tickets.jsonl"
    rows = [
        {
            "ticket_id": f"T{i:03d}",
            "category": "billing",
            "updated_at": (START + timedelta(hours=i)).isoformat(),
        }
        for i in range(30)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_follows_pagination_within_the_window(tickets_file):
    with serve_tickets(tickets_file) as (url, requests):
        tickets = fetch_tickets(
            url, START + timedelta(hours=2), START + timedelta(hours=25), page_size=7
        )
    assert [t["ticket_id"] for t in tickets] == [f"T{i:03d}" for i in range(2, 25)]
    assert len(requests) == 4  # 23 tickets, 7 a page
    assert all("limit=7" in r for r in requests)


def test_waits_as_told_on_429_and_retries_5xx(tickets_file):
    waits: list[float] = []
    faults = Faults(rate_limit_every=2, retry_after="3", server_error_every=5)
    with serve_tickets(tickets_file, faults) as (url, requests):
        tickets = fetch_tickets(
            url, START, START + timedelta(days=2), page_size=10, sleep=waits.append
        )
    assert len(tickets) == 30
    assert 3.0 in waits  # Retry-After honoured
    assert any(w != 3.0 for w in waits)  # backoff on 503
    assert len(requests) > 3


def test_client_error_fails_at_once_with_the_servers_message(tickets_file):
    waits: list[float] = []
    with serve_tickets(tickets_file) as (url, requests):
        with pytest.raises(SourceApiError, match=r"HTTP 400: .*limit must be between 1 and 1000"):
            get_json(f"{url}/tickets?limit=5000", sleep=waits.append)
        with pytest.raises(SourceApiError, match=r"/nothing: HTTP 404") as refused:
            get_json(f"{url}/nothing", sleep=waits.append)
    assert waits == [] and len(requests) == 2
    # nor is the task retried: a wrong URL, token or permission does not mend itself
    from crm360.pipeline import is_permanent

    assert is_permanent(refused.value)


def test_gives_up_after_repeated_server_errors(tickets_file):
    waits: list[float] = []
    with serve_tickets(tickets_file, Faults(server_error_every=1)) as (url, _):
        with pytest.raises(SourceApiError, match=r"gave up after 4 attempts \(last: HTTP 503"):
            get_json(f"{url}/tickets", max_attempts=4, sleep=waits.append)
    assert waits == [0.5, 1.0, 2.0]


def test_connection_refused_is_retried_then_reported():
    waits: list[float] = []
    with pytest.raises(SourceApiError, match="gave up after 3 attempts"):
        get_json("http://127.0.0.1:9/tickets", max_attempts=3, sleep=waits.append)
    assert len(waits) == 2


def test_serves_tickets_ordered_by_update_time_and_id_as_written(tmp_path):
    """The file is not in order; a ticket without a readable updated_at sorts first (1970)."""
    path = tmp_path / "tickets.jsonl"
    rows = [
        {"ticket_id": "B", "subject": "返品について", "priority": 2,
         "updated_at": "2026-10-01T10:00:00+09:00"},
        {"ticket_id": "A", "subject": "請求", "tags": ["billing"],
         "updated_at": "2026-10-01T01:00:00+00:00"},
        {"ticket_id": "C", "subject": "no time", "updated_at": "yesterday"},
        {"ticket_id": 7, "subject": "number id", "updated_at": "2026-10-01T00:30:00Z"},
    ]  # fmt: skip
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    path.write_text("\n".join(lines[:2]) + "\n\n" + "\n".join(lines[2:]) + "\n", encoding="utf-8")
    with serve_tickets(path) as (url, _):
        everything = fetch_tickets(url, datetime(1970, 1, 1, tzinfo=UTC), START + timedelta(2))
        october = fetch_tickets(url, START, START + timedelta(days=2), page_size=1)
    # B (01:00 UTC) and A (01:00 UTC) tie on time: ticket_id decides
    assert [t["ticket_id"] for t in everything] == ["C", 7, "A", "B"]
    assert [t["ticket_id"] for t in october] == [7, "A", "B"]
    assert everything[2] == rows[1] and everything[3] == rows[0]


@pytest.fixture
def demo_helpdesk(tmp_path, monkeypatch):
    """A source folder with valid tickets, read through the bundled demo API ("demo" URL)."""
    monkeypatch.delenv("CRM360_SOURCES_CONFIG", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_CRM360_SUPPORT_API", raising=False)
    source_dir = tmp_path / "sources"
    (source_dir / "support").mkdir(parents=True)
    rows = [
        {"ticket_id": f"T{i}", "category": "billing", "channel": "chat", "status": "open",
         "created_at": (START + timedelta(hours=i)).isoformat(),
         "updated_at": (START + timedelta(hours=i)).isoformat()}
        for i in range(6)
    ]  # fmt: skip
    lines = "".join(json.dumps(r) + "\n" for r in rows)
    (source_dir / "support" / "tickets.jsonl").write_text(lines, encoding="utf-8")
    return source_dir


def test_fetch_needs_no_warehouse_and_load_writes_what_was_fetched(
    demo_helpdesk, tmp_path, monkeypatch
):
    """The API is read before the warehouse is opened; the write makes no request."""
    as_of = START + timedelta(days=1)
    fetched = support.fetch(demo_helpdesk, as_of, since=EPOCH)
    assert [t["ticket_id"] for t in fetched.tickets] == [f"T{i}" for i in range(6)]

    def no_request(*args, **kwargs):
        raise AssertionError("load read the API although the tickets were fetched")

    monkeypatch.setattr(support, "fetch_tickets", no_request)
    with connect(tmp_path / "warehouse.duckdb") as con:
        (result,) = support.load(con, demo_helpdesk, as_of, "run-1", fetched=fetched)
        loaded = con.execute("select count(*) from raw.support_tickets").fetchone()[0]
        watermark = support.watermark(con)
    assert (result.rows_read, result.rows_loaded, loaded) == (6, 6, 6)
    assert result.source_location == fetched.location
    assert watermark == as_of


def test_a_fetch_overtaken_by_another_load_is_read_again_from_the_watermark(
    demo_helpdesk, tmp_path, monkeypatch
):
    """Another run moved the watermark between the fetch and the write."""
    first, second = START + timedelta(hours=3), START + timedelta(days=1)
    stale = support.fetch(demo_helpdesk, second, since=EPOCH)
    windows = []
    real = support.fetch_tickets

    def recorded(base_url, since, until, *args, **kwargs):
        windows.append((since, until))
        return real(base_url, since, until, *args, **kwargs)

    monkeypatch.setattr(support, "fetch_tickets", recorded)
    with connect(tmp_path / "warehouse.duckdb") as con:
        support.load(con, demo_helpdesk, first, "run-1")
        (result,) = support.load(con, demo_helpdesk, second, "run-2", fetched=stale)
        loaded = con.execute("select count(*) from raw.support_tickets").fetchone()[0]
    assert windows == [(EPOCH, first), (first, second)]
    assert result.rows_loaded == 3 and loaded == 6
