"""Command line: `crm360 generate`, `crm360 run`, `crm360 demo`.

crm360 demo                 generate the demo sources, run the daily DAG, print the summary
crm360 generate --out DIR   write demo source exports (deterministic for a seed)
crm360 run --date D         run the daily DAG once for logical date D with `airflow dags test`
crm360 check                validate every configuration file before a run

`run` and `demo` print each task as it starts and ends; when a run fails they print the failed
task, its error and the run report, and exit non-zero, as they do for a date the DAGs cannot
run (before `CRM360_START_DATE`, after `CRM360_DAILY_END_DATE`) or a run that ran no task.
`demo` starts from nothing, but deletes only what an earlier demo made (folders carrying the
`.crm360-demo` marker, or empty ones); anything else stops it before it deletes anything.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from crm360.settings import Settings, load_settings, private_files

DAG_ID = "crm360_daily"
AUDIENCES_DAG_ID = "crm360_audiences"
DEMO_AS_OF = date(2026, 11, 1)

log = logging.getLogger("crm360")


class AsOfDateError(ValueError):
    """The DAG cannot run this logical (as-of) date: before its start, or after its end."""


def check_logical_date(logical_date: date, dag_id: str = DAG_ID) -> None:
    """Raise AsOfDateError, naming the setting to change, for a date the DAG creates no task
    for: Airflow would report the run a success without running anything."""
    from crm360.assets import END_DATE_ENV, START_DATE_ENV, dag_start_date, daily_end_date

    at = datetime.combine(logical_date, datetime.min.time(), tzinfo=UTC)
    try:
        start, end = dag_start_date(), daily_end_date() if dag_id == DAG_ID else None
    except ValueError as exc:  # a setting that is not a date
        raise AsOfDateError(str(exc)) from exc
    if at < start:
        raise AsOfDateError(
            f"{dag_id} cannot run for {logical_date}: its start date is {start.date()}. "
            f"Set {START_DATE_ENV} to {logical_date} or earlier (an ISO date)."
        )
    if end is not None and at > end:
        raise AsOfDateError(
            f"{dag_id} cannot run for {logical_date}: its end date is {end.date()} "
            f"({END_DATE_ENV}). Set {END_DATE_ENV} to {logical_date} or later, or unset it."
        )


@dataclass(frozen=True)
class DagRunResult:
    """One `airflow dags test` run: its log, its `dag_run` row (None when the command failed
    before creating one) and its task instances."""

    dag_id: str
    logical_date: date
    log_file: Path
    returncode: int
    run: dict | None
    tasks: list[dict]

    @property
    def ok(self) -> bool:
        """Succeeded, having run at least one task."""
        state = self.run and self.run["state"]
        return self.returncode == 0 and state == "success" and bool(self.tasks)


def execute_dag(
    settings: Settings,
    logical_date: date,
    dag_id: str = DAG_ID,
    airflow_home: Path | None = None,
    on_line: Callable[[str], None] | None = None,
    log_file: Path | None = None,
) -> DagRunResult:
    """Run the DAG once in-process with `airflow dags test`, each output line to `on_line`
    and to `log_file` (a new one per run by default); raise AsOfDateError, before running
    anything, for a date the DAG cannot run."""
    from crm360 import airflow_env as airflow

    check_logical_date(logical_date, dag_id)
    env = airflow.airflow_env(settings, airflow_home)
    airflow.ensure_metadata_db(env)
    home = Path(env["AIRFLOW_HOME"])
    log_file = log_file or dag_log_file(home, dag_id, logical_date)
    before = airflow.last_dag_run_id(home, dag_id)
    proc = airflow.dags_test(env, dag_id, logical_date.isoformat(), log_file, on_line)
    run = airflow.dag_run_after(home, dag_id, before)
    tasks = airflow.task_instances(home, dag_id, run["run_id"]) if run else []
    return DagRunResult(dag_id, logical_date, log_file, proc.returncode, run, tasks)


def dag_log_file(airflow_home: Path, dag_id: str, logical_date: date) -> Path:
    """Where execute_dag writes the output of `airflow dags test`: one file per run (the
    logical date, then when it started), so a re-run never overwrites why an earlier one
    failed."""
    from datetime import UTC, datetime

    started = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return airflow_home / "runs" / f"{dag_id}_{logical_date.isoformat()}_{started}.log"


def run_dag(
    settings: Settings,
    logical_date: date,
    dag_id: str = DAG_ID,
    airflow_home: Path | None = None,
) -> tuple[bool, Path]:
    """Run the DAG once in-process; return (succeeded, log file). A run that ran no task did
    not succeed."""
    result = execute_dag(settings, logical_date, dag_id, airflow_home)
    return result.ok, result.log_file


def run_pipeline(
    settings: Settings, logical_date: date, airflow_home: Path | None = None
) -> tuple[bool, Path]:
    """The daily DAG, then (as its Asset event would on a scheduler) the audience DAG when the
    marts were published; return (both succeeded, log file of the last DAG run)."""
    ok, log_file = run_dag(settings, logical_date, DAG_ID, airflow_home)
    if not ok:
        return ok, log_file
    return run_dag(settings, logical_date, AUDIENCES_DAG_ID, airflow_home)


def _console(stderr: bool = False):
    from rich.console import Console

    # soft_wrap: a path or an error message stays on one line, whatever the terminal's width
    return Console(stderr=stderr, highlight=False, soft_wrap=True)


_STYLES = {"success": "green", "failed": "bold red", "up_for_retry": "yellow"}


class TaskProgress:
    """An `on_line` for execute_dag: one line when a task starts, one when it ends, with how
    it ended (state, duration, try) from the metadata database."""

    def __init__(self, console, airflow_home: Path, dag_id: str) -> None:
        self.console, self.airflow_home, self.dag_id = console, airflow_home, dag_id
        self.width = 20
        self.tries: dict[str, int] = {}

    def __call__(self, line: str) -> None:
        from crm360.airflow_env import latest_task_instance, task_event
        from crm360.report import describe_task

        event = task_event(line)
        if event is None:
            return
        kind, task_id = event
        self.width = max(self.width, len(task_id))
        if kind == "start":
            self.tries[task_id] = self.tries.get(task_id, 0) + 1
            tries = self.tries[task_id]
            self._print(task_id, "started" + (f" (try {tries})" if tries > 1 else ""), None)
            return
        try:
            task = latest_task_instance(self.airflow_home, self.dag_id, task_id)
        except sqlite3.Error:  # the database stayed locked: the line without the details
            task = None
        what = describe_task(task) if task else "ended"
        self._print(task_id, what, _STYLES.get(task["state"]) if task else None)

    def _print(self, task_id: str, what: str, style: str | None) -> None:
        clock = datetime.now().strftime("%H:%M:%S")
        self.console.print(f"  {clock}  {task_id:<{self.width}}  {what}", style=style, markup=False)


def explain_failure(settings: Settings, result: DagRunResult) -> str:
    """Why a run did not succeed: its failed tasks with their errors and its run report; or
    that it ran no task; or the end of the log when Airflow did not get as far as a run."""
    from crm360.airflow_env import task_errors
    from crm360.assets import END_DATE_ENV, START_DATE_ENV
    from crm360.report import format_failure

    where = f"\n\nThe whole Airflow log: {result.log_file}"
    if result.run is None:
        lines = result.log_file.read_text(encoding="utf-8", errors="replace").splitlines()
        return (
            f"{result.dag_id} did not run for {result.logical_date}: `airflow dags test` ended "
            f"with exit code {result.returncode} before creating a run. The end of its log:\n"
            + "\n".join(f"  {line}" for line in lines[-20:]) + where
        )  # fmt: skip
    if not result.tasks:
        return (
            f"{result.dag_id} ran no task for {result.logical_date} (run "
            f"{result.run['run_id']}, which Airflow reports as {result.run['state']}). Airflow "
            "creates no task for a logical date before the DAG's start date or after its end "
            f"date: check {START_DATE_ENV} and {END_DATE_ENV} in the environment of the run."
            + where
        )
    with result.log_file.open(encoding="utf-8", errors="replace") as handle:
        errors = task_errors(handle)
    run_id = result.run["run_id"]
    report = _latest_report(settings, result.dag_id, run_id)
    failure = format_failure(
        result.dag_id, result.logical_date, run_id, result.tasks, errors, report
    )
    return failure + where


def _prune_run_logs(airflow_home: Path) -> list[Path]:
    """Remove the logs of earlier runs (`dag_log_file`) older than
    CRM360_RUN_LOG_RETENTION_DAYS (crm360.retention)."""
    from crm360.retention import prune_run_logs
    from crm360.settings import run_log_retention_days

    keep_days = run_log_retention_days()
    return prune_run_logs(airflow_home / "runs", keep_days, datetime.now(UTC))


def run_with_progress(settings: Settings, logical_date: date) -> bool:
    """`run_pipeline` for a person: each task as it starts and ends, and on failure the
    failing task, its error and the run report. Raises AsOfDateError before running anything
    for a date the DAGs cannot run."""
    from crm360.airflow_env import airflow_env

    check_logical_date(logical_date, DAG_ID)
    console = _console()
    home = Path(airflow_env(settings)["AIRFLOW_HOME"])
    _prune_run_logs(home)
    for dag_id in (DAG_ID, AUDIENCES_DAG_ID):
        log_file = dag_log_file(home, dag_id, logical_date)
        console.print(f"{dag_id} for {logical_date} (airflow dags test, log {log_file}):",
                      markup=False)  # fmt: skip
        progress = TaskProgress(console, home, dag_id)
        result = execute_dag(settings, logical_date, dag_id, on_line=progress, log_file=log_file)
        if not result.ok:
            _console(stderr=True).print(explain_failure(settings, result), markup=False)
            return False
    return True


def _latest_report(settings: Settings, dag_id: str, run_id: str | None = None) -> dict | None:
    """The newest stored run report of the DAG (of run `run_id` if given), if any."""
    from crm360.warehouse import connect

    if not settings.warehouse.exists():
        return None
    with connect(settings.warehouse, read_only=True) as con:
        exists = con.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = 'ops' and table_name = 'run_reports'"
        ).fetchone()[0]
        if not exists:
            return None
        row = con.execute(
            "select report from ops.run_reports where dag_id = ? and run_id = coalesce(?, run_id) "
            "order by created_at desc limit 1",
            [dag_id, run_id],
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


def _cmd_check(args: argparse.Namespace) -> int:
    from crm360.config_check import configuration_problems

    problems = configuration_problems(load_settings())
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print("configuration ok: contracts, sources, identity, quality, audiences")
    return 2 if problems else 0


def _cmd_run(args: argparse.Namespace) -> int:
    from crm360.config_check import configuration_problems
    from crm360.settings import SettingError, export_retention_days, run_log_retention_days

    settings = load_settings()
    started = time.monotonic()
    try:
        check_logical_date(args.date, DAG_ID)
        run_log_retention_days(), export_retention_days()
    except (AsOfDateError, SettingError) as exc:
        print(f"crm360 run: {exc}", file=sys.stderr)
        return 2
    problems = configuration_problems(settings)
    if problems:
        print("crm360 run: invalid configuration, nothing was run:", file=sys.stderr)
        for problem in problems:
            print(problem, file=sys.stderr)
        return 2
    ok = run_with_progress(settings, args.date)
    if not ok:
        return 1
    print_summary(settings, time.monotonic() - started)
    return 0


class DemoStateError(RuntimeError):
    """The demo would delete files it did not make."""


def _demo_may_delete(folder: Path) -> bool:
    """A folder the demo may delete: absent, empty, or carrying the demo's marker."""
    from crm360.demo.generator import DEMO_MARKER

    if not folder.exists():
        return True
    return folder.is_dir() and ((folder / DEMO_MARKER).exists() or not any(folder.iterdir()))


def _warehouse_files(db: Path) -> list[Path]:
    return [db, db.with_name(db.name + ".wal")]


def _reset_demo_state(settings: Settings) -> None:
    """The demo always starts from nothing: its sources, warehouse, analysts' copy and exports
    of an earlier demo are removed (the raw layer is append-only and would keep old rows).

    Only what the demo made is removed: a folder carrying the demo's marker (or empty), and
    warehouse files in a folder that carries it. Anything else raises DemoStateError, naming
    each place and its setting, before anything is deleted."""
    from crm360.demo.generator import DEMO_MARKER

    folders = {"CRM360_SOURCE_DIR": settings.source_dir, "CRM360_EXPORT_DIR": settings.export_dir}
    databases = {
        "CRM360_WAREHOUSE": settings.warehouse,
        "CRM360_PUBLISHED_WAREHOUSE": settings.published_warehouse,
    }
    refused = [f"  {path} ({name})" for name, path in folders.items() if not _demo_may_delete(path)]
    refused += [
        f"  {path} ({name})"
        for name, path in databases.items()
        if any(p.exists() for p in _warehouse_files(path))
        and not (path.parent / DEMO_MARKER).exists()
    ]
    if refused:
        raise DemoStateError(
            "crm360 demo deletes only what an earlier demo made, and these hold files without "
            f"the demo's {DEMO_MARKER} marker:\n" + "\n".join(refused) + "\nNothing was "
            "deleted. Point the settings named at new or empty folders, or move those files "
            "away (if they are an older demo's output, delete them yourself)."
        )
    for path in folders.values():
        if path.is_dir():
            shutil.rmtree(path)
    for db in databases.values():
        for path in _warehouse_files(db):
            path.unlink(missing_ok=True)


def _claim_demo_state(settings: Settings) -> None:
    """Mark the folders the demo writes to (new or empty ones only) so the next demo may
    clear them; the generator marks the sources folder itself."""
    from crm360.demo.generator import mark_demo_folder

    for folder in (
        settings.export_dir, settings.warehouse.parent, settings.published_warehouse.parent
    ):  # fmt: skip
        mark_demo_folder(folder)


def _cmd_demo(args: argparse.Namespace) -> int:
    from crm360.demo.generator import generate_demo

    settings = load_settings()
    started = time.monotonic()
    try:
        _reset_demo_state(settings)
    except DemoStateError as exc:
        print(exc, file=sys.stderr)
        return 2
    _claim_demo_state(settings)
    print(f"Generating demo sources for {args.customers:,} people in {settings.source_dir} ...")
    counts = generate_demo(
        settings.source_dir, customers=args.customers, seed=args.seed, as_of=DEMO_AS_OF
    )
    print("  " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    if not run_with_progress(settings, DEMO_AS_OF):
        return 1
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

    check = sub.add_parser(
        "check", help="validate every configuration file (sources, contracts, identity, ...)"
    )
    check.set_defaults(func=_cmd_check)

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
    # files 0600, folders 0700: inherited by the Airflow, dbt and other processes started here
    private_files()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
