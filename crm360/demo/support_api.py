"""A small helpdesk API for the demo and the tests, served on 127.0.0.1.

    GET /tickets?updated_since=ISO&updated_before=ISO&limit=N&cursor=C
    -> {"tickets": [...], "next_cursor": "..." | null}

Tickets come from a JSON-lines file, ordered by (updated_at, ticket_id); at start only those two
fields are read (polars), and a page is answered with the tickets' lines as written, the way a
real helpdesk answers from its index without parsing every ticket. `faults` makes the
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
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

_MICROSECOND = timedelta(microseconds=1)


@dataclass
class Faults:
    rate_limit_every: int = 0  # every Nth request gets 429
    retry_after: str = "1"
    server_error_every: int = 0  # every Nth request gets 503


def _load(path: Path) -> tuple[list[datetime], list[str]]:
    """(updated_at of each ticket, its JSON line), ordered by (updated_at, ticket_id). A
    missing or unparsable updated_at sorts first, as 1970-01-01."""
    import polars as pl

    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        return [], []
    keys = pl.read_ndjson(
        "\n".join(lines).encode("utf-8"),
        schema={"ticket_id": pl.String, "updated_at": pl.String},
    )
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    order = []
    for position, (ticket_id, text) in enumerate(keys.iter_rows()):
        try:
            updated = datetime.fromisoformat(text)
        except (TypeError, ValueError):
            updated = epoch
        if updated.tzinfo is None:
            updated = updated.replace(tzinfo=UTC)
        # sorted on integer microseconds: comparing aware datetimes is ~10x slower
        order.append(((updated - epoch) // _MICROSECOND, str(ticket_id), position, updated))
    order.sort()
    return [t[3] for t in order], [lines[t[2]] for t in order]


def _handler(
    times: list[datetime], lines: list[str], faults: Faults, log: list
) -> type[BaseHTTPRequestHandler]:
    lock = threading.Lock()  # times are sorted: a window is two binary searches

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test and task logs quiet
            pass

        def _send(self, status: int, body: dict | bytes, headers: dict | None = None) -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
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
            page = lines[first + offset : min(first + offset + limit, last)]
            more = first + offset + limit < last
            cursor = json.dumps(str(offset + limit) if more else None)
            body = '{"tickets": [' + ", ".join(page) + '], "next_cursor": ' + cursor + "}"
            self._send(200, body.encode("utf-8"))

    return Handler


@contextmanager
def serve_tickets(path: Path, faults: Faults | None = None) -> Iterator[tuple[str, list[str]]]:
    """Serve the tickets file on 127.0.0.1 (free port); yield (base URL, request log)."""
    requests: list[str] = []
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), _handler(*_load(path), faults or Faults(), requests)
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
