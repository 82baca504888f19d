"""The helpdesk API client against a misbehaving server on 127.0.0.1.

Each test starts a server that answers with one fault (an endless or repeating cursor, a hang,
a dropped connection, a drip-fed body, a body that is not JSON) and checks that the client stops
or recovers in bounded time, with an error that names the URL and never the data. The server is
bounded too: it answers at most MAX_REQUESTS requests and every wait in it ends when the test
ends.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ingestion.support import DeadlineExceeded, SourceApiError, fetch_tickets, get_json

SINCE = datetime(2026, 10, 1, tzinfo=UTC)
UNTIL = SINCE + timedelta(days=1)
MAX_REQUESTS = 200
TICKET = {"ticket_id": "T1", "customer_email": "hanako@example.com", "updated_at": "2026-10-01"}


class Fault(BaseHTTPRequestHandler):
    """Answers with the server's `respond(handler, n)`, n counting requests from 1."""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        server = self.server
        with server.lock:
            server.paths.append(self.path)
            count = len(server.paths)
        if count > MAX_REQUESTS:
            self.close_connection = True
            return
        server.respond(self, count)

    def send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def page(tickets: list[dict], cursor: str | None) -> bytes:
    return json.dumps({"tickets": tickets, "next_cursor": cursor}).encode()


@contextmanager
def fault_server(respond: Callable[[Fault, int], None]) -> Iterator[tuple[str, list, object]]:
    """Serve `respond` on 127.0.0.1; yield (base URL, request paths, stop event)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Fault)
    server.daemon_threads = True
    server.respond, server.paths, server.lock = respond, [], threading.Lock()
    server.stop = threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.paths, server.stop
    finally:
        server.stop.set()  # ends every hang and drip
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_endless_fresh_cursors_stop_at_the_page_limit():
    """Fault: the server always sends a new next_cursor, so the pages never end."""

    def respond(handler: Fault, n: int) -> None:
        handler.send(200, page([TICKET], f"c{n}"))

    with fault_server(respond) as (url, paths, _):
        with pytest.raises(SourceApiError, match=r"/tickets: more than 40 pages \(40 tickets\)"):
            fetch_tickets(url, SINCE, UNTIL, max_pages=40)
    assert len(paths) == 40


@pytest.mark.parametrize("cursors", [["same"], ["a", "b"]], ids=["same", "cycle"])
def test_a_repeated_cursor_stops_the_fetch(cursors):
    """Fault: the server sends a next_cursor it has sent before in the same fetch."""

    def respond(handler: Fault, n: int) -> None:
        handler.send(200, page([TICKET], cursors[(n - 1) % len(cursors)]))

    with fault_server(respond) as (url, paths, _):
        with pytest.raises(SourceApiError) as raised:
            fetch_tickets(url, SINCE, UNTIL)
    message = str(raised.value)
    assert f"{url}/tickets?updated_since=" in message and "cursor=" in message
    assert f"next_cursor '{cursors[0]}' again" in message
    assert len(paths) == len(cursors) + 1


def test_a_hanging_server_is_retried_after_the_request_timeout():
    """Fault: the server accepts the request and never answers."""

    def respond(handler: Fault, n: int) -> None:
        handler.server.stop.wait(30)

    waits: list[float] = []
    with fault_server(respond) as (url, paths, _):
        started = time.monotonic()
        with pytest.raises(SourceApiError, match=r"gave up after 3 attempts \(last: .*timed out"):
            get_json(f"{url}/tickets", max_attempts=3, timeout=0.3, sleep=waits.append)
    assert time.monotonic() - started < 5
    assert len(paths) == 3 and waits == [0.5, 1.0]


def test_a_hanging_server_stops_the_fetch_at_its_deadline_without_credentials():
    """Fault: the server hangs longer than the whole fetch may take."""

    def respond(handler: Fault, n: int) -> None:
        if n == 1:
            handler.send(200, page([TICKET], "next"))
        else:
            handler.server.stop.wait(30)

    with fault_server(respond) as (url, _, _):
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded) as raised:
            fetch_tickets(f"{url}", SINCE, UNTIL, deadline_seconds=1.5)
        with pytest.raises(DeadlineExceeded) as direct:
            get_json(f"{url}/tickets?api_key=s3cret", deadline=time.monotonic() + 0.5)
    assert time.monotonic() - started < 5
    assert "within its 1.5 s deadline, 1 page(s) (1 tickets) read" in str(raised.value)
    assert f"{url}/tickets?updated_since=" in str(raised.value)
    assert "s3cret" not in str(direct.value) and "api_key=***" in str(direct.value)


@pytest.mark.parametrize("drop", ["before_answering", "mid_body"])
def test_a_dropped_connection_is_retried(drop):
    """Fault: the server closes the connection without an answer, or halfway through the body."""

    def respond(handler: Fault, n: int) -> None:
        if n <= 2 and drop == "before_answering":
            handler.close_connection = True
        elif n <= 2:
            body = page([TICKET], None)
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body[:10])
            handler.close_connection = True
        else:
            handler.send(200, page([TICKET], None))

    waits: list[float] = []
    with fault_server(respond) as (url, paths, _):
        tickets = fetch_tickets(url, SINCE, UNTIL, sleep=waits.append)
    assert tickets == [TICKET]
    assert len(paths) == 3 and waits == [0.5, 1.0]


def test_a_drip_fed_body_is_stopped_by_the_deadline():
    """Fault: the server sends the body one byte at a time, each well within the timeout."""

    def respond(handler: Fault, n: int) -> None:
        if n == 1:
            handler.send(200, page([TICKET], "next"))
            return
        body = page([TICKET], None)
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        for byte in body:
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
            if handler.server.stop.wait(0.25):
                return

    with fault_server(respond) as (url, paths, _):
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded, match=r"within its 2 s deadline, 1 page\(s\)"):
            fetch_tickets(url, SINCE, UNTIL, deadline_seconds=2)
        elapsed = time.monotonic() - started
    assert 2 <= elapsed < 3.5
    assert len(paths) == 2  # stopped while reading, not retried


def test_an_html_error_page_with_200_names_url_status_and_type_not_the_body():
    """Fault: a proxy answers 200 with an HTML page instead of JSON."""
    html = b"<html><body>Gateway error for hanako@example.com</body></html>"

    def respond(handler: Fault, n: int) -> None:
        handler.send(200, html, "text/html; charset=utf-8")

    with fault_server(respond) as (url, paths, _):
        with pytest.raises(SourceApiError) as raised:
            fetch_tickets(url, SINCE, UNTIL)
    message = str(raised.value)
    assert f"{url}/tickets?updated_since=" in message
    assert "HTTP 200 (text/html; charset=utf-8)" in message
    assert "not JSON: Expecting value at line 1 column 1" in message
    assert "hanako" not in message and "Gateway" not in message
    assert len(paths) == 1


def test_truncated_json_is_reported_without_its_rows():
    """Fault: the server sends JSON cut short, with a Content-Length that matches it."""
    body = page([TICKET, TICKET], None)[:70]

    def respond(handler: Fault, n: int) -> None:
        handler.send(200, body)

    with fault_server(respond) as (url, _, _):
        with pytest.raises(
            SourceApiError, match=r"HTTP 200 \(application/json\) .*not JSON"
        ) as raised:
            get_json(f"{url}/tickets")
    assert "hanako" not in str(raised.value) and "T1" not in str(raised.value)


def test_an_oversized_answer_is_refused():
    """Fault: the server sends a body larger than a page can be."""

    def respond(handler: Fault, n: int) -> None:
        handler.send(200, page([TICKET] * 200, None))

    with fault_server(respond) as (url, _, _):
        with pytest.raises(SourceApiError, match=r"larger than 1,000 bytes"):
            get_json(f"{url}/tickets", max_bytes=1000)
