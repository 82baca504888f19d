"""Run one pipeline stage in this process and print its result as one JSON line.

The benchmark starts each stage in its own process so that the peak memory of the stage (and of
the dbt subprocess it starts) can be read from the operating system when it exits. Paths come
from the CRM360_* environment variables, as in a real deployment.

python -m bench.stage STAGE AS_OF RUN_ID
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime, time


def run(stage: str, as_of: date, run_id: str) -> dict:
    from crm360 import pipeline

    if stage == "ingest":
        from ingestion import SOURCES

        at = datetime.combine(as_of, time(), tzinfo=UTC)
        loads = [pipeline.ingest_source(source, run_id, at) for source in SOURCES]
        rows = sum(load["rows_read"] for result in loads for load in result["loads"])
        return {"rows": rows, "loaded": loads}
    if stage == "staging":
        return pipeline.build_staging(as_of)
    if stage == "identity":
        return pipeline.resolve_identities(as_of, run_id)
    if stage == "marts":
        return pipeline.build_marts(as_of)
    if stage == "core_marts":
        # the marts the pandas baseline computes, models only (no tests), on the loaded data
        from crm360.dbt import run_dbt_as_of
        from crm360.settings import load_settings

        # the date and vars as the pipeline's builds pass them, so that dbt parses as they do
        return run_dbt_as_of(
            load_settings(),
            ["run", "--select", "+customer_360", "+customer_rfm", "--exclude", "tag:staging"],
            as_of,
        )
    if stage == "quality":
        from crm360.quality import run_gate
        from crm360.settings import load_settings

        # measured, not enforced: a warning or a failure is reported in the results
        return run_gate(load_settings(), run_id, raise_on_failure=False).summary()
    if stage == "publish":
        return pipeline.publish_marts()
    if stage == "export":
        result = pipeline.export_audiences(run_id, {"status": "passed"})
        return {**result, "rows": sum(a["rows"] for a in result["audiences"])}
    raise SystemExit(f"unknown stage {stage!r}")


def main() -> int:
    stage, as_of, run_id = sys.argv[1], date.fromisoformat(sys.argv[2]), sys.argv[3]
    result = run(stage, as_of, run_id)
    print("BENCH-RESULT " + json.dumps(result, default=str, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
