"""The floor: the least work any pipeline must do, scanning every source once.

One aggregate query per source object with DuckDB over the raw files (a count and the range of
one column, so every row is parsed; rows that do not parse are skipped, as the floor only
measures the scan). The CRM's full export is Shift_JIS, which DuckDB does not
decode without an extension: that file is decoded and split into lines by Python. The shop
database is
SQLite, and DuckDB's SQLite reader is an extension that is not bundled, so the shop tables are
scanned by SQLite itself (`count(*)` and `max(updated_at)` per table).
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from datetime import date
from pathlib import Path

_CSV = "read_csv({files}, all_varchar=true, header=true, ignore_errors=true)"

# object: (files under the source folder, DuckDB reader over {files}, column for max())
QUERIES = {
    "support": ("support/tickets.jsonl", "read_json({files}, format='newline_delimited', "
                "ignore_errors=true)", "updated_at"),
    "web": ("web/events/date=*/events.jsonl", "read_json({files}, "
            "format='newline_delimited', ignore_errors=true)", "occurred_at"),
    "email": ("email/events_*.csv", _CSV, "occurred_at"),
    "email_campaigns": ("email/campaigns.csv", _CSV, "sent_at"),
    "social": ("social/mentions_*.jsonl", "read_json({files}, format='newline_delimited', "
               "ignore_errors=true)", "posted_at"),
    "social_referrals": ("social/referrals.csv", _CSV, "referred_at"),
    "spend": ("spend/marketing_spend.csv", _CSV, "month_start"),
}  # fmt: skip


def _files(source_dir: Path, pattern: str, as_of: date) -> list[str]:
    """The files a run as of `as_of` loads (dated files only when dated before it)."""
    from ingestion.files import discover

    return [str(f.path) for f in discover(source_dir, pattern, as_of)]


def scan_sources(source_dir: Path, as_of: date) -> dict[str, dict]:
    """Seconds and rows of one scan of each source object, as a run as of `as_of` sees it."""
    import duckdb

    results = {"crm": _scan_crm(source_dir, as_of)}
    con = duckdb.connect()
    for name, (pattern, reader, column) in QUERIES.items():
        files = _files(source_dir, pattern, as_of)
        started = time.perf_counter()
        rows, _ = con.execute(
            f"select count(*), max({column}) from {reader.format(files='$files')}",
            {"files": files},
        ).fetchone()
        results[name] = {"rows": rows, "seconds": time.perf_counter() - started}
    con.close()
    shop = sqlite3.connect(source_dir / "shop" / "orders.sqlite")
    started = time.perf_counter()
    rows = 0
    tables = [t for (t,) in shop.execute("select name from sqlite_master where type = 'table'")]
    for table in tables:
        rows += shop.execute(f'select count(*), max(updated_at) from "{table}"').fetchone()[0]
    results["shop"] = {"rows": rows, "seconds": time.perf_counter() - started}
    shop.close()
    return results


def _scan_crm(source_dir: Path, as_of: date) -> dict:
    import duckdb

    started = time.perf_counter()
    rows = 0
    con = duckdb.connect()
    for name in _files(source_dir, "crm/contacts_*.csv", as_of):
        path = Path(name)
        data = path.read_bytes()
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            rows += len(data.decode("cp932", errors="replace").splitlines()) - 1
            continue
        rows += con.execute(
            "select count(*) from read_csv(?, all_varchar=true, header=true, ignore_errors=true)",
            [str(path)],
        ).fetchone()[0]
    con.close()
    return {"rows": rows, "seconds": time.perf_counter() - started}


def main() -> int:
    result = scan_sources(Path(sys.argv[1]), date.fromisoformat(sys.argv[2]))
    print("BENCH-RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
