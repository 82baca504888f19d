"""A small helpdesk API for the demo and the tests, served on 127.0.0.1.

    GET /tickets?updated_since=ISO&updated_before=ISO&limit=N&cursor=C
    -> {"tickets": [...], "next_cursor": "..." | null}

Tickets come from a JSON-lines file, ordered by (updated_at, ticket_id). `faults` makes the
server behave like a real, busy API: every Nth request answered 429 with a Retry-After header,
or 503, so the client's handling of both is exercised.
"""

from __future__ import annotations

import json
import threading
from bisect import bisect_left
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse


@dataclass
class Faults:
    rate_limit_every: int = 0  # every Nth request gets 429
    retry_after: str = "1"
    server_error_every: int = 0  # every Nth request gets 503


def _load(path: Path) -> list[tuple[datetime, str, dict]]:
    tickets = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                ticket = json.loads(line)
                try:
                    updated = datetime.fromisoformat(ticket["updated_at"])
                except (TypeError, ValueError, KeyError):
                    updated = datetime.fromisoformat("1970-01-01T00:00:00+00:00")
                tickets.append((updated, str(ticket.get("ticket_id")), ticket))
    tickets.sort(key=lambda t: (t[0], t[1]))
    return tickets


def _handler(tickets: list, faults: Faults, log: list) -> type[BaseHTTPRequestHandler]:
    lock = threading.Lock()
    times = [t[0] for t in tickets]  # sorted: a window is two binary searches

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test and task logs quiet
            pass

        def _send(self, status: int, body: dict, headers: dict | None = None) -> None:
            data = json.dumps(body, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            with lock:
                log.append(self.path)
                count = len(log)
            if faults.rate_limit_every and count % faults.rate_limit_every == 0:
                self._send(429, {"error": "rate limited"}, {"Retry-After": faults.retry_after})
                return
            if faults.server_error_every and count % faults.server_error_every == 0:
                self._send(503, {"error": "temporarily unavailable"})
                return
            url = urlparse(self.path)
            if url.path != "/tickets":
                self._send(404, {"error": f"no such resource: {url.path}"})
                return
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            try:
                since = datetime.fromisoformat(
                    query.get("updated_since", "1970-01-01T00:00:00+00:00")
                )
                before = datetime.fromisoformat(
                    query.get("updated_before", "9999-01-01T00:00:00+00:00")
                )
                limit = int(query.get("limit", "100"))
                offset = int(query.get("cursor", "0"))
            except ValueError as exc:
                self._send(400, {"error": f"bad query parameter: {exc}"})
                return
            if not 1 <= limit <= 1000:
                self._send(400, {"error": "limit must be between 1 and 1000"})
                return
            first, last = bisect_left(times, since), bisect_left(times, before)
            page = [t for _, _, t in tickets[first + offset : min(first + offset + limit, last)]]
            more = first + offset + limit < last
            self._send(200, {"tickets": page, "next_cursor": str(offset + limit) if more else None})

    return Handler


@contextmanager
def serve_tickets(path: Path, faults: Faults | None = None) -> Iterator[tuple[str, list[str]]]:
    """Serve the tickets file on 127.0.0.1 (free port); yield (base URL, request log)."""
    requests: list[str] = []
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), _handler(_load(path), faults or Faults(), requests)
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
