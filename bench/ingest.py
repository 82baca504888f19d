"""Ingestion throughput: generate the demo sources at a size, load every source, print rows/s.

.venv/bin/python bench/ingest.py --customers 100000
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

from crm360.demo.generator import generate_demo
from crm360.warehouse import connect
from ingestion import SOURCES, load_source


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="crm360-bench-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        counts = generate_demo(root / "sources", args.customers, args.seed, date(2026, 11, 1))
        print(
            f"generated {sum(counts.values()):,} source rows for {args.customers:,} people "
            f"in {time.perf_counter() - started:.1f} s"
        )
        print(f"{'source':<10}{'rows read':>12}{'quarantined':>13}{'seconds':>10}{'rows/s':>12}")
        total_rows, total_seconds = 0, 0.0
        with connect(root / "w.duckdb") as con:
            for source in SOURCES:
                started = time.perf_counter()
                results = load_source(
                    source, con, root / "sources", datetime(2026, 11, 1, tzinfo=UTC)
                )
                seconds = time.perf_counter() - started
                rows = sum(r.rows_read for r in results)
                bad = sum(r.rows_quarantined for r in results)
                total_rows, total_seconds = total_rows + rows, total_seconds + seconds
                print(f"{source:<10}{rows:>12,}{bad:>13,}{seconds:>10.2f}{rows / seconds:>12,.0f}")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"{'all':<10}{total_rows:>12,}{'':>13}{total_seconds:>10.2f}"
            f"{total_rows / total_seconds:>12,.0f}"
        )
        print(f"peak RSS {peak:,.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
