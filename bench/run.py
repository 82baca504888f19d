"""The benchmark: the whole pipeline at several sizes, against the floor and a pandas baseline.

For each size: generate the demo sources (cached under bench/.cache), run every stage of a full
run as of DAY1 in a fresh warehouse, then one incremental day (DAY2), each stage in its own
process so its wall time and peak memory (RSS of the stage's largest process, dbt included) are
the operating system's figures. Then, on the same files: the floor (bench/floor.py), the core
marts alone in DuckDB/dbt, and the same core marts in pandas (bench/pandas_baseline.py).
Prints a table per size and appends the results, with the machine's facts, to
bench/results/<timestamp>.json.

    make bench                                   # 10k, 100k and 1M people
    .venv/bin/python -m bench.run --sizes 10000  # one size
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
DAY1, DAY2 = date(2026, 11, 1), date(2026, 11, 2)
STAGES = ["ingest", "staging", "identity", "marts", "quality", "publish", "export"]


def _generator_version() -> str:
    """Cached sources are reused only while the generator's code is unchanged."""
    digest = hashlib.sha256()
    for path in sorted((BENCH.parent / "crm360" / "demo").glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def sources_for(people: int, seed: int, cache: Path, env: dict) -> tuple[Path, float | None]:
    """Generated sources for `people` (as of DAY2, so DAY1's run leaves one day to load),
    written by a child process: this one stays small (see run_process)."""
    target = cache / f"sources-{people}-{seed}-{_generator_version()}"
    if (target / ".complete").exists():
        return target, None
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    generated = run_process(
        [sys.executable, "-m", "crm360.cli", "generate", "--out", str(target),
         "--customers", str(people), "--seed", str(seed), "--as-of", DAY2.isoformat()],
        env, target.parent / f"generate-{people}.log",
    )  # fmt: skip
    (target / ".complete").touch()
    return target, generated["seconds"]


def run_process(args: list[str], env: dict, log_path: Path) -> dict:
    """Run a child process; its wall seconds, peak RSS (MiB) and the BENCH-RESULT it printed.

    Linux starts a child's peak RSS from its parent's size at the fork, so this process does
    no heavy work itself (generation and the floor run in children too) and stays small."""
    started = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    output = log_path.read_text(encoding="utf-8", errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}); see {log_path}:\n"
                           f"{output[-3000:]}")  # fmt: skip
    result = next(
        (json.loads(line[len("BENCH-RESULT ") :]) for line in output.splitlines()
         if line.startswith("BENCH-RESULT ")), {},
    )  # fmt: skip
    # Linux reports ru_maxrss in KiB: the largest of the child and the children it waited for
    return {"seconds": seconds, "peak_rss_mib": usage.ru_maxrss / 1024, "result": result}


def stage_env(work: Path, sources: Path) -> dict:
    env = {
        **os.environ,
        "CRM360_SOURCE_DIR": str(sources),
        "CRM360_WAREHOUSE": str(work / "warehouse" / "crm360.duckdb"),
        "CRM360_PUBLISHED_WAREHOUSE": str(work / "warehouse" / "published" / "crm360.duckdb"),
        "CRM360_EXPORT_DIR": str(work / "exports"),
        "CRM360_DBT_TARGET_DIR": str(work / "dbt_target"),
        "CRM360_GX_DIR": str(work / "expectations"),
        "GX_ANALYTICS_ENABLED": "false",
    }
    return env


def run_day(day: date, run_id: str, work: Path, env: dict) -> dict:
    stages = {}
    for stage in STAGES:
        stages[stage] = run_process(
            [sys.executable, "-m", "bench.stage", stage, day.isoformat(), run_id],
            env,
            work / f"{run_id}-{stage}.log",
        )
    rows = stages["ingest"]["result"]["rows"]
    for stage in stages.values():
        stage["rows_per_second"] = rows / stage["seconds"]
    return {
        "as_of": day.isoformat(),
        "source_rows": rows,
        "seconds": sum(s["seconds"] for s in stages.values()),
        "peak_rss_mib": max(s["peak_rss_mib"] for s in stages.values()),
        "stages": {k: _stage_figures(v) for k, v in stages.items()},
    }


def _stage_figures(stage: dict) -> dict:
    """A stage's figures for the results file: its time and memory, and where the time went:
    each source's for the ingest, each phase's for identity, dbt's nodes for a dbt stage
    (bench.stage.dbt_nodes)."""
    figures = {k: v for k, v in stage.items() if k != "result"}
    for detail in ("sources", "phase_seconds", "dbt"):
        if detail in stage["result"]:
            figures[detail] = stage["result"][detail]
    return figures


def bench_size(people: int, seed: int, root: Path, cache: Path) -> dict:
    work = root / f"run-{people}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copytree(BENCH.parent / "expectations", work / "expectations",
                    ignore=shutil.ignore_patterns("uncommitted"))  # fmt: skip
    cache.mkdir(parents=True, exist_ok=True)
    sources, generated = sources_for(people, seed, cache, dict(os.environ))
    env = stage_env(work, sources)
    full = run_day(DAY1, "bench-day-1", work, env)
    core = run_process(
        [sys.executable, "-m", "bench.stage", "core_marts", DAY1.isoformat(), "bench-core"],
        env, work / "core-marts.log",
    )  # fmt: skip
    incremental = run_day(DAY2, "bench-day-2", work, env)
    floor = run_process(
        [sys.executable, "-m", "bench.floor", str(sources), DAY1.isoformat()],
        env, work / "floor.log",
    )["result"]  # fmt: skip
    pandas = run_process(
        [sys.executable, "-m", "bench.pandas_baseline", str(sources), DAY1.isoformat()],
        env, work / "pandas.log",
    )  # fmt: skip
    floor_seconds = sum(f["seconds"] for f in floor.values())
    # ours for the core marts: loading the files, then the core models on the loaded data
    ours_core = full["stages"]["ingest"]["seconds"] + full["stages"]["staging"]["seconds"] + (
        full["stages"]["identity"]["seconds"] + core["seconds"])  # fmt: skip
    result = {
        "people": people,
        "seed": seed,
        "generated_seconds": generated,
        "full": full,
        "incremental": incremental,
        "floor": {"seconds": floor_seconds, "rows": sum(f["rows"] for f in floor.values()),
                  "objects": floor},
        "core_marts": {"dbt_seconds": core["seconds"], "peak_rss_mib": core["peak_rss_mib"],
                       "ours_from_files_seconds": ours_core, "dbt": core["result"].get("dbt")},
        "pandas": {"seconds": pandas["seconds"], "peak_rss_mib": pandas["peak_rss_mib"],
                   "compute_seconds": pandas["result"].get("seconds")},
        "ratios": {
            "pipeline_over_floor": full["seconds"] / floor_seconds,
            "incremental_over_full": incremental["seconds"] / full["seconds"],
            "pandas_over_ours_from_files": pandas["seconds"] / ours_core,
            "pandas_over_ours_core_models": pandas["seconds"] / core["seconds"],
        },
    }  # fmt: skip
    shutil.rmtree(work / "warehouse", ignore_errors=True)
    return result


def machine() -> dict:
    from importlib.metadata import version

    with open("/proc/meminfo", encoding="utf-8") as meminfo:
        total_kib = int(meminfo.readline().split()[1])
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(total_kib / 1024**2, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {p: version(p) for p in
                     ["duckdb", "dbt-core", "dbt-duckdb", "polars", "pandas",
                      "great-expectations", "splink", "apache-airflow"]},
    }  # fmt: skip


def print_size(r: dict) -> None:
    print(f"\n== {r['people']:,} people: {r['full']['source_rows']:,} source rows in the full "
          f"run, {r['incremental']['source_rows']:,} on the incremental day")  # fmt: skip
    print(f"{'stage':<10}{'full s':>9}{'peak MiB':>10}{'rows/s':>12}{'incr s':>9}{'peak MiB':>10}")
    for stage in STAGES:
        f, i = r["full"]["stages"][stage], r["incremental"]["stages"][stage]
        print(
            f"{stage:<10}{f['seconds']:>9.1f}{f['peak_rss_mib']:>10,.0f}"
            f"{f['rows_per_second']:>12,.0f}{i['seconds']:>9.1f}{i['peak_rss_mib']:>10,.0f}"
        )
    print(
        f"{'total':<10}{r['full']['seconds']:>9.1f}{r['full']['peak_rss_mib']:>10,.0f}"
        f"{'':>12}{r['incremental']['seconds']:>9.1f}{r['incremental']['peak_rss_mib']:>10,.0f}"
    )
    ratios = r["ratios"]
    print(
        f"floor (one DuckDB scan per source): {r['floor']['seconds']:.1f} s; "
        f"pipeline / floor = {ratios['pipeline_over_floor']:.1f}"
    )
    print(f"incremental day / full run = {ratios['incremental_over_full']:.0%}")
    print(
        f"core marts: pandas {r['pandas']['seconds']:.1f} s "
        f"(peak {r['pandas']['peak_rss_mib']:,.0f} MiB) vs ours from the files "
        f"{r['core_marts']['ours_from_files_seconds']:.1f} s "
        f"(x{ratios['pandas_over_ours_from_files']:.2f}), core models alone "
        f"{r['core_marts']['dbt_seconds']:.1f} s (x{ratios['pandas_over_ours_core_models']:.2f})"
    )
    for day in ("full", "incremental"):
        stages = r[day]["stages"]
        sources = stages["ingest"].get("sources")
        if sources:
            ranked = sorted(sources.items(), key=lambda item: item[1]["seconds"], reverse=True)
            print(f"{day} ingest by source: " + ", ".join(
                f"{name} {figures['seconds']:.1f} s ({figures['rows']:,} rows)"
                for name, figures in ranked))  # fmt: skip
        phases = stages["identity"].get("phase_seconds")
        if phases:
            print(f"{day} identity by phase: " + ", ".join(
                f"{phase} {seconds:.1f} s" for phase, seconds in phases.items()))  # fmt: skip
        for stage in ("staging", "marts"):
            print_dbt_nodes(f"{day} {stage}", stages[stage].get("dbt"))
    print_dbt_nodes("core models", r["core_marts"].get("dbt"))


def print_dbt_nodes(label: str, dbt: dict | None, shown: int = 5) -> None:
    """One line per dbt stage: its node seconds by kind and its slowest nodes."""
    if not dbt:
        return
    kinds = ", ".join(
        f"{kind} x{dbt['node_counts'][kind]} {seconds:.1f} s"
        for kind, seconds in dbt["node_seconds"].items()
    )
    slowest = ", ".join(
        f"{node['node'].split('.')[2]} {node['seconds']:.1f} s" for node in dbt["slowest"][:shown]
    )
    print(f"dbt {label}: {kinds}; slowest: {slowest}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--work-dir", type=Path, default=BENCH / ".work")
    parser.add_argument("--cache-dir", type=Path, default=BENCH / ".cache")
    parser.add_argument("--results-dir", type=Path, default=BENCH / "results")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    started = datetime.now(UTC)
    record = {"started_at": started.isoformat(), "machine": machine(), "sizes": []}
    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = args.results_dir / f"{started:%Y%m%dT%H%M%SZ}.json"
    for people in sizes:
        result = bench_size(people, args.seed, args.work_dir, args.cache_dir)
        record["sizes"].append(result)
        print_size(result)
        out.write_text(json.dumps(record, indent=2), encoding="utf-8")  # kept after each size
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
