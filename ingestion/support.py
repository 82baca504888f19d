"""Support tickets from the helpdesk's paginated HTTP JSON API.

The client follows `next_cursor` pages, waits as told on HTTP 429 (Retry-After), retries
transient failures (5xx, refused, reset or dropped connections, timeouts) with exponential
backoff, and fails at once, with the URL and the server's message, on any other 4xx. Every
request has a socket timeout and a whole fetch has a deadline, checked between the chunks of a
body, so a server that hangs or drip-feeds cannot hold a run; a cursor seen before in the same
fetch, or more than `max_pages` pages, stops the fetch. An answer that is not JSON is reported
by URL, status, content type and parse position, never by its body. Read incrementally by
`updated_at`.

Reading and writing are apart: `fetch` only talks to the API, `load` writes what was fetched, so
a caller can fetch before it opens the warehouse for writing and hold its lock only to write.
"""

from __future__ import annotations

import http.client
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from crm360.redact import redact_secrets, redact_url, url_secrets
from ingestion.config import resolve_url, source_config
from ingestion.contracts import load_contract
from ingestion.files import json_value_as_text
from ingestion.mapping import ObjectMapping
from ingestion.raw import LoadResult, load_object
from ingestion.watermarks import read_watermark, set_watermark

if TYPE_CHECKING:
    import duckdb

log = logging.getLogger(__name__)

SOURCE = "support"
OBJECT = "tickets"
MAX_RETRY_AFTER = 60.0
REQUEST_TIMEOUT = 30.0  # seconds a request may wait for any one read from the server
DEADLINE_SECONDS = 600.0  # a whole fetch, every page and retry included
MAX_PAGES = 100_000
MAX_PAGE_BYTES = 256 * 1024 * 1024
_CHUNK = 64 * 1024
_ERROR_BODY_BYTES = 300

# What a retry can cure: the connection refused, reset, dropped or timed out, a reply cut short
# or garbled on the wire. HTTPError (a URLError) is told apart before these are caught.
_CONNECTION_ERRORS = (urllib.error.URLError, OSError, http.client.HTTPException)


class SourceApiError(RuntimeError):
    """The API refused the request, kept failing, or answered something unusable."""


class SourceApiRefused(SourceApiError):
    """The API refused the request (HTTP 4xx other than 429): a wrong URL, token or
    permission, which a retry of the task cannot fix."""

    permanent = True


class DeadlineExceeded(SourceApiError):
    """A fetch did not finish within its deadline."""


def _retry_after(value: str | None, fallback: float) -> float:
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER)
    except (TypeError, ValueError):
        return fallback


def _read_body(response, deadline: float | None, limit: int, url: str) -> bytes:
    """The response body, read a chunk at a time so the deadline is checked while a slow server
    sends it; a body cut short raises IncompleteRead."""
    body = bytearray()
    while chunk := response.read1(_CHUNK):
        body += chunk
        if len(body) > limit:
            raise SourceApiError(f"{redact_url(url)}: the answer is larger than {limit:,} bytes")
        if deadline is not None and time.monotonic() >= deadline:
            raise DeadlineExceeded(
                f"{redact_url(url)}: deadline passed while reading the answer "
                f"({len(body):,} bytes so far)"
            )
    if response.length:  # the server closed before sending Content-Length bytes
        raise http.client.IncompleteRead(b"", response.length)
    return bytes(body)


def _error_message(exc: urllib.error.HTTPError, url: str) -> str:
    """The start of an error answer's body, or nothing when it cannot be read quickly; any
    secret of the URL the server repeats in it (`invalid token tok-…`) masked."""
    try:
        body = exc.read1(_ERROR_BODY_BYTES).decode("utf-8", errors="replace")
    except (*_CONNECTION_ERRORS, ValueError):
        return ""
    return redact_secrets(body, url_secrets(url))


def _parse(body: bytes, url: str, status: int, content_type: str) -> dict:
    try:
        page = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise SourceApiError(
            f"{redact_url(url)}: HTTP {status} ({content_type or 'no content type'}) answered "
            f"{len(body):,} bytes that are not UTF-8 (byte {exc.start})"
        ) from None
    except json.JSONDecodeError as exc:
        raise SourceApiError(
            f"{redact_url(url)}: HTTP {status} ({content_type or 'no content type'}) answered "
            f"{len(body):,} bytes that are not JSON: {exc.msg} at line {exc.lineno} column "
            f"{exc.colno}"
        ) from None
    if not isinstance(page, dict):
        raise SourceApiError(
            f"{redact_url(url)}: HTTP {status}: expected a JSON object, got {type(page).__name__}"
        )
    return page


def get_json(
    url: str,
    max_attempts: int = 6,
    backoff: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
    timeout: float = REQUEST_TIMEOUT,
    deadline: float | None = None,
    max_bytes: int = MAX_PAGE_BYTES,
) -> dict:
    """GET a JSON object, handling 429 / 5xx / connection errors as a patient client does.

    `timeout` bounds each wait for the server; `deadline` (a `time.monotonic()` instant) bounds
    every attempt and backoff together, raising DeadlineExceeded when it passes."""
    last = "nothing tried"
    for attempt in range(1, max_attempts + 1):
        wait = backoff * 2 ** (attempt - 1)
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            break
        try:
            request_timeout = timeout if remaining is None else min(timeout, remaining)
            with urllib.request.urlopen(url, timeout=request_timeout) as response:  # noqa: S310 - configured URL
                body = _read_body(response, deadline, max_bytes, url)
                content_type = response.headers.get("Content-Type", "")
                return _parse(body, url, response.status, content_type)
        except urllib.error.HTTPError as exc:
            body = _error_message(exc, url)
            if exc.code == 429:
                wait = _retry_after(exc.headers.get("Retry-After"), wait)
                log.warning("%s: HTTP 429, retrying after %.1f s", redact_url(url), wait)
            elif exc.code >= 500:
                log.warning("%s: HTTP %d, retrying in %.1f s", redact_url(url), exc.code, wait)
            else:
                raise SourceApiRefused(f"{redact_url(url)}: HTTP {exc.code}: {body}") from exc
            last = f"HTTP {exc.code}: {body}"
        except _CONNECTION_ERRORS as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            # a bad status line is data; an invalid URL is named in the reason
            last = f"{type(exc).__name__}: {redact_secrets(str(reason), url_secrets(url))[:200]}"
            log.warning("%s: %s, retrying in %.1f s", redact_url(url), last, wait)
        if attempt < max_attempts:
            if deadline is not None and time.monotonic() + wait >= deadline:
                break
            sleep(wait)
    else:
        raise SourceApiError(
            f"{redact_url(url)}: gave up after {max_attempts} attempts (last: {last})"
        )
    raise DeadlineExceeded(f"{redact_url(url)}: deadline passed (last: {last})")


def tickets_url(base_url: str, query: dict) -> str:
    """The URL of the tickets resource under `base_url` with `query`; the base URL's own query
    parameters (an `api_token=…` the helpdesk authenticates with) are kept, before `query`."""
    parts = urlsplit(base_url)
    params = [*parse_qsl(parts.query, keep_blank_values=True), *query.items()]
    path = f"{parts.path.rstrip('/')}/tickets"
    return urlunsplit((parts.scheme, parts.netloc, path, urlencode(params), ""))


def fetch_tickets(
    base_url: str,
    since: datetime,
    until: datetime,
    page_size: int = 200,
    *,
    deadline_seconds: float = DEADLINE_SECONDS,
    max_pages: int = MAX_PAGES,
    **retry,
) -> list[dict]:
    """Every ticket updated in [since, until), following the pagination cursor.

    Stops with SourceApiError, naming the URL and the pages read, when the server repeats a
    cursor, when more than `max_pages` pages come, or when the whole fetch takes longer than
    `deadline_seconds`; `retry` is passed to get_json."""
    params = {
        "updated_since": since.astimezone(UTC).isoformat(),
        "updated_before": until.astimezone(UTC).isoformat(),
        "limit": page_size,
    }
    deadline = time.monotonic() + deadline_seconds
    tickets: list[dict] = []
    seen: set[str] = set()
    cursor = None
    for pages in range(max_pages):
        query = {**params, **({"cursor": cursor} if cursor else {})}
        url = tickets_url(base_url, query)
        read = f"{pages:,} page(s) ({len(tickets):,} tickets) read"
        try:
            page = get_json(url, deadline=deadline, **retry)
        except DeadlineExceeded as exc:
            raise DeadlineExceeded(
                f"{exc}; the fetch did not finish within its {deadline_seconds:g} s deadline, "
                f"{read}"
            ) from exc
        except SourceApiError as exc:  # keeps its class: a refusal is not retried
            raise type(exc)(f"{exc}; {read}") from exc
        if not isinstance(page.get("tickets"), list):
            raise SourceApiError(f"{redact_url(url)}: the answer has no `tickets` list; {read}")
        tickets.extend(page["tickets"])
        cursor = page.get("next_cursor")
        if not cursor:
            return tickets
        cursor = str(cursor)
        if cursor in seen:
            raise SourceApiError(
                f"{redact_url(url)}: the server sent next_cursor {cursor!r} again; stopping "
                f"rather than reading the same pages forever; {pages + 1:,} page(s) read"
            )
        seen.add(cursor)
    raise SourceApiError(
        f"{redact_url(base_url)}/tickets: more than {max_pages:,} pages ({len(tickets):,} tickets) "
        f"for {params['updated_since']} to {params['updated_before']}; the server keeps sending "
        "a next_cursor (raise max_pages if the window really is that large)"
    )


@dataclass(frozen=True)
class Fetched:
    """Tickets read from the API for the window [since, until), not yet written."""

    since: datetime
    until: datetime
    location: str  # the URL read, without credentials, as raw tables record it
    tickets: list[dict]


def watermark(con: duckdb.DuckDBPyConnection) -> datetime:
    """Up to when the tickets were read: the `since` of the next fetch."""
    return read_watermark(con, SOURCE, OBJECT)


def fetch(source_dir: Path, as_of: datetime, since: datetime, **options) -> Fetched | None:
    """The tickets updated in [since, as_of), read from the API without touching the
    warehouse; None when the source is disabled or nothing is due. `options` go to
    fetch_tickets (deadline_seconds, max_pages, retry settings)."""
    config = source_config(SOURCE)
    if config is None or not config.enabled or since >= as_of:
        return None
    url = resolve_url(config, source_dir)
    if url == "demo":
        from crm360.demo.support_api import serve_tickets

        server = serve_tickets(source_dir / SOURCE / f"{OBJECT}.jsonl")
    else:
        server = nullcontext((url, []))
    with server as (base_url, _):
        tickets = fetch_tickets(base_url, since, as_of, config.page_size, **options)
    read = tickets_url(url, {})  # with the base URL's own query, if any
    location = redact_url(
        f"{read}{'&' if '?' in read else '?'}updated_since={since.isoformat()}"
        f"&updated_before={as_of.isoformat()}"
    )
    return Fetched(since, as_of, location, tickets)


def load(
    con: duckdb.DuckDBPyConnection,
    source_dir: Path,
    as_of: datetime,
    run_id: str | None = None,
    fetched: Fetched | None = None,
) -> list[LoadResult]:
    """Write the tickets updated since the watermark up to `as_of` and move the watermark.

    `fetched` is what `fetch` read before the warehouse was opened; it is written when it
    starts at the current watermark and ends at `as_of`, otherwise (another run moved the
    watermark meanwhile) the API is read again here."""
    import polars as pl

    config = source_config(SOURCE)
    if config is None or not config.enabled:
        return []
    contract = load_contract(SOURCE)[OBJECT]
    since = watermark(con)
    if since >= as_of:
        return []
    if fetched is None or (fetched.since, fetched.until) != (since, as_of):
        if fetched is not None:
            log.warning(
                "%s: fetched from %s but the watermark is now %s; reading again",
                fetched.location, fetched.since.isoformat(), since.isoformat(),
            )  # fmt: skip
        fetched = fetch(source_dir, as_of, since)
        if fetched is None:
            return []
    tickets = fetched.tickets
    columns = list(contract.columns) + sorted(
        {k for t in tickets for k in t} - set(contract.columns)
    )
    frame = pl.DataFrame(
        {c: [json_value_as_text(t.get(c)) for t in tickets] for c in columns},
        schema={c: pl.String for c in columns},
    )
    state = [set_watermark(SOURCE, contract.name, as_of)]
    mapping = ObjectMapping.of(config, config.objects.get(contract.name))
    return [load_object(con, contract, frame, fetched.location, run_id, state, mapping=mapping)]
