"""dbt in Airflow: one `dbt build` task per layer against one task per dbt node (cosmos).

Runs the daily DAG (`airflow dags test`, the same Airflow the demo uses) twice on the same
sources, each in a fresh warehouse: CRM360_DBT_TASKS=build, then CRM360_DBT_TASKS=models.
For each it reads the task instances from Airflow's metadata database and prints, per dbt layer,
the tasks, the wall time from the first task's start to the last one's end, and the summed task
durations; then the whole run's wall time, and checks that both modes built the same marts (the
row count of every mart table). Results are appended to bench/results/dbt-tasks-<time>.json.

    make bench-dbt-tasks                         # the demo's 5,000 people
    .venv/bin/python -m bench.dbt_tasks --customers 20000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.run import BENCH, DAY1, machine, sources_for
from crm360.airflow_env import airflow_env, dags_test, ensure_metadata_db
from crm360.settings import PROJECT_ROOT, load_settings
from crm360.warehouse import connect

LAYERS = ("dbt_staging", "dbt_build")


def _seconds(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def run_mode(mode: str, sources: Path, work: Path) -> dict:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copytree(PROJECT_ROOT / "expectations", work / "expectations",
                    ignore=shutil.ignore_patterns("uncommitted"))  # fmt: skip
    settings = dataclasses.replace(
        load_settings(),
        source_dir=sources,
        warehouse=work / "warehouse" / "crm360.duckdb",
        published_warehouse=work / "warehouse" / "published" / "crm360.duckdb",
        export_dir=work / "exports",
        dbt_target_dir=work / "dbt_target",
        gx_dir=work / "expectations",
    )
    env = {**airflow_env(settings, work / "airflow"), "CRM360_DBT_TASKS": mode}
    ensure_metadata_db(env)
    if mode == "models":
        subprocess.run([sys.executable, "-m", "crm360.cli", "dbt-manifest"], env=env,
                       check=True, capture_output=True)  # fmt: skip
    started = time.perf_counter()
    proc = dags_test(env, "crm360_daily", DAY1.isoformat(), work / "dag.log")
    seconds = time.perf_counter() - started
    with sqlite3.connect(work / "airflow" / "airflow.db") as db:
        rows = db.execute(
            "select task_id, state, start_date, end_date, duration from task_instance "
            "where dag_id = 'crm360_daily'"
        ).fetchall()
    if proc.returncode != 0 or any(r[1] != "success" for r in rows):
        raise RuntimeError(f"the {mode} run failed; see {work / 'dag.log'}")
    layers = {}
    for layer in LAYERS:
        tasks = [r for r in rows if r[0] == layer or r[0].startswith(layer + ".")]
        layers[layer] = {
            "tasks": len(tasks),
            "wall_seconds": _seconds(min(r[2] for r in tasks), max(r[3] for r in tasks)),
            "task_seconds": sum(r[4] for r in tasks),
        }
    with connect(settings.warehouse, read_only=True) as con:
        marts = dict(con.execute(
            "select table_name, estimated_size from duckdb_tables() "
            "where schema_name = 'marts' order by 1"
        ).fetchall())  # fmt: skip
        marts = {t: con.execute(f'select count(*) from marts."{t}"').fetchone()[0] for t in marts}
    return {"mode": mode, "run_seconds": seconds, "layers": layers, "mart_rows": marts}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--work-dir", type=Path, default=BENCH / ".work" / "dbt-tasks")
    parser.add_argument("--cache-dir", type=Path, default=BENCH / ".cache")
    args = parser.parse_args(argv)

    args.cache_dir.mkdir(parents=True, exist_ok=True)
    sources, _ = sources_for(args.customers, args.seed, args.cache_dir, dict(os.environ))
    results = [run_mode(m, sources, args.work_dir / m) for m in ("build", "models")]
    build, models = results
    same = build["mart_rows"] == models["mart_rows"]

    print(f"\ndbt in Airflow, {args.customers:,} people, as of {DAY1}")
    print(f"{'':<24}{'build':>14}{'models':>14}{'ratio':>9}")
    for layer in LAYERS:
        b, m = build["layers"][layer], models["layers"][layer]
        print(f"{layer + ' tasks':<24}{b['tasks']:>14}{m['tasks']:>14}")
        print(f"{layer + ' wall s':<24}{b['wall_seconds']:>14.1f}{m['wall_seconds']:>14.1f}"
              f"{m['wall_seconds'] / b['wall_seconds']:>8.1f}x")  # fmt: skip
    print(f"{'whole run s':<24}{build['run_seconds']:>14.1f}{models['run_seconds']:>14.1f}"
          f"{models['run_seconds'] / build['run_seconds']:>8.1f}x")  # fmt: skip
    print(f"same marts (row count of all {len(build['mart_rows'])} mart tables): {same}")

    out = BENCH / "results" / f"dbt-tasks-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"customers": args.customers, "machine": machine(),
                               "same_marts": same, "runs": results}, indent=2))  # fmt: skip
    print(f"results: {out}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
