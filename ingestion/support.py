"""Support tickets from the helpdesk's paginated HTTP JSON API.

The client follows `next_cursor` pages, waits as told on HTTP 429 (Retry-After), retries
transient failures (5xx, connection errors) with exponential backoff, and fails at once, with
the URL and the server's message, on any other 4xx. Read incrementally by `updated_at`.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from crm360.redact import redact_url
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
MAX_RETRY_AFTER = 60.0


class SourceApiError(RuntimeError):
    """The API refused the request or kept failing."""


def _retry_after(value: str | None, fallback: float) -> float:
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER)
    except (TypeError, ValueError):
        return fallback


def get_json(
    url: str,
    max_attempts: int = 6,
    backoff: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> dict:
    """GET a JSON document, handling 429 / 5xx / connection errors as a patient client does."""
    for attempt in range(1, max_attempts + 1):
        wait = backoff * 2 ** (attempt - 1)
        try:
            with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - configured URL
                return json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            body = exc.read().decode("utf-8", errors="replace")[:300]
            if exc.code == 429:
                wait = _retry_after(exc.headers.get("Retry-After"), wait)
                log.warning("%s: HTTP 429, retrying after %.1f s", redact_url(url), wait)
            elif exc.code >= 500:
                log.warning("%s: HTTP %d, retrying in %.1f s", redact_url(url), exc.code, wait)
            else:
                raise SourceApiError(f"{redact_url(url)}: HTTP {exc.code}: {body}") from exc
            last = f"HTTP {exc.code}: {body}"
        except urllib.error.URLError as exc:
            log.warning("%s: %s, retrying in %.1f s", redact_url(url), exc.reason, wait)
            last = str(exc.reason)
        if attempt < max_attempts:
            sleep(wait)
    raise SourceApiError(f"{redact_url(url)}: gave up after {max_attempts} attempts (last: {last})")


def fetch_tickets(
    base_url: str, since: datetime, until: datetime, page_size: int = 200, **retry
) -> list[dict]:
    """Every ticket updated in [since, until), following the pagination cursor."""
    params = {
        "updated_since": since.astimezone(UTC).isoformat(),
        "updated_before": until.astimezone(UTC).isoformat(),
        "limit": page_size,
    }
    tickets, cursor = [], None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        page = get_json(f"{base_url.rstrip('/')}/tickets?{urlencode(query)}", **retry)
        tickets.extend(page["tickets"])
        cursor = page.get("next_cursor")
        if not cursor:
            return tickets


def load(
    con: duckdb.DuckDBPyConnection, source_dir: Path, as_of: datetime, run_id: str | None = None
) -> list[LoadResult]:
    import polars as pl

    from crm360.demo.support_api import serve_tickets

    config = source_config(SOURCE)
    if config is None or not config.enabled:
        return []
    contract = load_contract(SOURCE)["tickets"]
    since = read_watermark(con, SOURCE, contract.name)
    if since >= as_of:
        return []
    url = resolve_url(config, source_dir)
    server = (
        serve_tickets(source_dir / "support" / "tickets.jsonl")
        if url == "demo"
        else nullcontext((url, []))
    )
    with server as (base_url, _):
        tickets = fetch_tickets(base_url, since, as_of, config.page_size)
    columns = list(contract.columns) + sorted(
        {k for t in tickets for k in t} - set(contract.columns)
    )
    frame = pl.DataFrame(
        {c: [json_value_as_text(t.get(c)) for t in tickets] for c in columns},
        schema={c: pl.String for c in columns},
    )
    location = redact_url(
        f"{url}/tickets?updated_since={since.isoformat()}&updated_before={as_of.isoformat()}"
    )
    state = [set_watermark(SOURCE, contract.name, as_of)]
    mapping = ObjectMapping.of(config, config.objects.get(contract.name))
    return [load_object(con, contract, frame, location, run_id, state, mapping=mapping)]
