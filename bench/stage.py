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
from pathlib import Path

DBT_STAGES = ("staging", "marts", "core_marts")


def dbt_nodes(run_results: Path, slowest: int = 10) -> dict:
    """Where a dbt build's time went, from its run_results.json: the seconds and count of each
    kind of node (model, test, seed, snapshot) and the slowest nodes. Node seconds add up
    across dbt's threads, so they can exceed the stage's wall time."""
    results = json.loads(run_results.read_text(encoding="utf-8"))["results"]
    kinds: dict[str, dict] = {}
    for node in results:
        kind = kinds.setdefault(node["unique_id"].split(".")[0], {"count": 0, "seconds": 0.0})
        kind["count"] += 1
        kind["seconds"] += node["execution_time"]
    ranked = sorted(results, key=lambda node: node["execution_time"], reverse=True)
    return {
        "node_seconds": {kind: round(v["seconds"], 2) for kind, v in sorted(kinds.items())},
        "node_counts": {kind: v["count"] for kind, v in sorted(kinds.items())},
        "slowest": [
            {"node": node["unique_id"], "seconds": round(node["execution_time"], 2)}
            for node in ranked[:slowest]
        ],
    }


def run(stage: str, as_of: date, run_id: str) -> dict:
    result = _run(stage, as_of, run_id)
    if stage in DBT_STAGES:
        from crm360.settings import load_settings

        result = {**result, "dbt": dbt_nodes(load_settings().dbt_target_dir / "run_results.json")}
    return result


def _run(stage: str, as_of: date, run_id: str) -> dict:
    from crm360 import pipeline

    if stage == "ingest":
        from ingestion import SOURCES

        at = datetime.combine(as_of, time(), tzinfo=UTC)
        loads = [pipeline.ingest_source(source, run_id, at) for source in SOURCES]
        # each source's share of the stage, for the results file
        sources = {
            result["source"]: {
                "seconds": result["seconds"],
                "rows": sum(load["rows_read"] for load in result["loads"]),
            }
            for result in loads
        }
        rows = sum(source["rows"] for source in sources.values())
        return {"rows": rows, "loaded": loads, "sources": sources}
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
