"""Command line: `crm360 generate`, `crm360 run`, `crm360 demo`.

crm360 demo                 generate the demo sources, run the daily DAG, print the summary
crm360 generate --out DIR   write demo source exports (deterministic for a seed)
crm360 run --date D         run the daily DAG once for logical date D with `airflow dags test`
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sqlite3
import sys
import time
from datetime import date
from pathlib import Path

from crm360.settings import Settings, load_settings

DAG_ID = "crm360_daily"
AUDIENCES_DAG_ID = "crm360_audiences"
DEMO_AS_OF = date(2026, 11, 1)

log = logging.getLogger("crm360")


def _dag_run_state(airflow_home: Path, dag_id: str) -> str | None:
    db = airflow_home / "airflow.db"
    if not db.exists():
        return None
    with sqlite3.connect(db) as con:
        row = con.execute(
            "select state from dag_run where dag_id = ? order by id desc limit 1", (dag_id,)
        ).fetchone()
    return row[0] if row else None


def run_dag(
    settings: Settings,
    logical_date: date,
    dag_id: str = DAG_ID,
    airflow_home: Path | None = None,
) -> tuple[bool, Path]:
    """Run the DAG once in-process; return (succeeded, log file)."""
    from crm360.airflow_env import airflow_env, dags_test, ensure_metadata_db

    env = airflow_env(settings, airflow_home)
    ensure_metadata_db(env)
    log_file = Path(env["AIRFLOW_HOME"]) / "runs" / f"{dag_id}_{logical_date.isoformat()}.log"
    proc = dags_test(env, dag_id, logical_date.isoformat(), log_file)
    state = _dag_run_state(Path(env["AIRFLOW_HOME"]), dag_id)
    return proc.returncode == 0 and state == "success", log_file


def run_pipeline(
    settings: Settings, logical_date: date, airflow_home: Path | None = None
) -> tuple[bool, Path]:
    """The daily DAG, then (as its Asset event would on a scheduler) the audience DAG when the
    marts were published; return (both succeeded, log file of the last DAG run)."""
    ok, log_file = run_dag(settings, logical_date, DAG_ID, airflow_home)
    if not ok:
        return ok, log_file
    return run_dag(settings, logical_date, AUDIENCES_DAG_ID, airflow_home)


def _latest_report(settings: Settings, dag_id: str) -> dict | None:
    from crm360.warehouse import connect

    with connect(settings.warehouse, read_only=True) as con:
        exists = con.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = 'ops' and table_name = 'run_reports'"
        ).fetchone()[0]
        if not exists:
            return None
        row = con.execute(
            "select report from ops.run_reports where dag_id = ? order by created_at desc limit 1",
            [dag_id],
        ).fetchone()
    return json.loads(row[0]) if row else None


def print_summary(settings: Settings, elapsed: float) -> None:
    from crm360.pipeline import run_summary

    summary = run_summary(settings)
    docs = settings.gx_dir / "uncommitted" / "data_docs" / "local_site" / "index.html"
    print()
    print(f"Pipeline finished in {elapsed:.0f} s.")
    print(f"  warehouse (DuckDB):   {settings.warehouse}")
    print(f"  audience exports:     {settings.export_dir}")
    print(f"  data-quality report:  {docs}")
    print(f"  customers:            {summary['customers']:,}")
    print(f"  buyers:               {summary['buyers']:,}")
    print(f"  e-mail contactable:   {summary['email_contactable']:,}")
    print(f"  rows quarantined:     {summary['rows_quarantined_total']:,}")
    print(
        "  RFM segments:         "
        + ", ".join(f"{k} {v:,}" for k, v in summary["rfm_segments"].items())
    )
    for latest in sorted(settings.export_dir.glob("*/latest.json")):
        pointer = json.loads(latest.read_text(encoding="utf-8"))
        print(
            f"  audience {latest.parent.name}: {pointer['row_count']:,} customers "
            f"-> {latest.parent / pointer['path']}"
        )
    from crm360.report import format_report

    for dag_id in (DAG_ID, AUDIENCES_DAG_ID):
        report = _latest_report(settings, dag_id)
        if report:
            print(f"\nRun report of {dag_id} (ops.run_reports):\n" + format_report(report))
    print(
        "\nQuery the marts: .venv/bin/crm360 sql "
        '"select rfm_segment, count(*) from marts.customer_rfm group by 1"'
    )


def _cmd_generate(args: argparse.Namespace) -> int:
    from crm360.demo.generator import generate_demo

    counts = generate_demo(
        Path(args.out), customers=args.customers, seed=args.seed, as_of=args.as_of
    )
    print(json.dumps(counts, indent=2))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    settings = load_settings()
    started = time.monotonic()
    ok, log_file = run_pipeline(settings, args.date)
    if not ok:
        print(f"DAG run failed; the Airflow log is {log_file}", file=sys.stderr)
        return 1
    print_summary(settings, time.monotonic() - started)
    return 0


def _reset_demo_state(settings: Settings) -> None:
    """The demo always starts from nothing: its sources, warehouse, analysts' copy and exports
    of an earlier demo are removed (the raw layer is append-only and would keep old rows)."""
    for path in (settings.source_dir, settings.export_dir):
        if path.is_dir():
            shutil.rmtree(path)
    for db in (settings.warehouse, settings.published_warehouse):
        for path in (db, db.with_name(db.name + ".wal")):
            path.unlink(missing_ok=True)


def _cmd_demo(args: argparse.Namespace) -> int:
    from crm360.demo.generator import generate_demo

    settings = load_settings()
    started = time.monotonic()
    _reset_demo_state(settings)
    print(f"Generating demo sources for {args.customers:,} people in {settings.source_dir} ...")
    counts = generate_demo(
        settings.source_dir, customers=args.customers, seed=args.seed, as_of=DEMO_AS_OF
    )
    print("  " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    logical_date = DEMO_AS_OF
    print(
        f"Running the Airflow DAGs {DAG_ID}, then {AUDIENCES_DAG_ID}, for {logical_date} "
        "(airflow dags test) ..."
    )
    ok, log_file = run_pipeline(settings, logical_date)
    if not ok:
        print(f"DAG run failed; the Airflow log is {log_file}", file=sys.stderr)
        return 1
    print(f"  Airflow log: {log_file}")
    print_summary(settings, time.monotonic() - started)
    return 0


def _cmd_sql(args: argparse.Namespace) -> int:
    from crm360.warehouse import connect

    settings = load_settings()
    path = settings.published_warehouse
    if args.live or not path.exists():
        path = settings.warehouse
    with connect(path, read_only=True) as con:
        relation = con.sql(args.query)
        if args.csv:
            relation.pl().write_csv(sys.stdout)
        else:
            relation.show(max_rows=args.max_rows, max_width=200)
    return 0


def _cmd_dbt_manifest(args: argparse.Namespace) -> int:
    from crm360.dbt import run_dbt

    settings = load_settings()
    run_dbt(settings, ["parse"])
    print(settings.dbt_target_dir / "manifest.json")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crm360", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write demo source exports")
    gen.add_argument("--out", required=True, help="folder to write the source files into")
    gen.add_argument("--customers", type=int, default=2000, help="number of people (default 2000)")
    gen.add_argument("--seed", type=int, default=42)
    gen.add_argument("--as-of", type=date.fromisoformat, default=DEMO_AS_OF)
    gen.set_defaults(func=_cmd_generate)

    run = sub.add_parser("run", help="run the daily DAG once (airflow dags test)")
    run.add_argument(
        "--date", type=date.fromisoformat, required=True, help="logical date, YYYY-MM-DD"
    )
    run.set_defaults(func=_cmd_run)

    demo = sub.add_parser("demo", help="generate the demo data and run the whole pipeline")
    demo.add_argument("--customers", type=int, default=5000, help="number of people (default 5000)")
    demo.add_argument("--seed", type=int, default=42)
    demo.set_defaults(func=_cmd_demo)

    sql = sub.add_parser(
        "sql", help="query the published read-only copy of the warehouse (the last good run)"
    )
    sql.add_argument("query", help='e.g. "select * from marts.customer_360 limit 5"')
    sql.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    sql.add_argument(
        "--live", action="store_true",
        help="read the working warehouse instead of the published copy (fails while a run writes)",
    )  # fmt: skip
    sql.add_argument("--max-rows", type=int, default=40)
    sql.set_defaults(func=_cmd_sql)

    manifest = sub.add_parser(
        "dbt-manifest",
        help="write dbt's manifest (dbt parse), which CRM360_DBT_TASKS=models renders tasks from",
    )
    manifest.set_defaults(func=_cmd_dbt_manifest)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
