"""The run report: what one DAG run did, stored in `ops.run_reports` and printed in the log.

Built from each step's result (XCom): rows read / loaded / quarantined per source, the sources
skipped or stale (an optional source that failed to load, with its error), dbt's node counts,
the row count of every mart, the data-quality result, the audiences exported and their sizes,
and each stage's duration. A step that did not finish is reported as such.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from typing import Any

from crm360.settings import Settings
from crm360.warehouse import connect

_DDL = """
create schema if not exists ops;
create table if not exists ops.run_reports (
    run_id varchar primary key,
    dag_id varchar not null,
    as_of_date date not null,
    status varchar not null,
    report json not null,
    created_at timestamptz not null
);
"""


class RequiredSourceFailed(RuntimeError):
    """A source that is not in CRM360_OPTIONAL_SOURCES failed to load: the run stops before dbt."""

    permanent = True  # the source's own task had its retries


def source_errors(
    sources: Iterable[str],
    result: Callable[[str], Any],
    error: Callable[[str], Any],
) -> dict[str, str]:
    """The sources whose ingest task did not finish, each with its error summary:
    `result(source)` is the task's result (None unless it succeeded), `error(source)` the
    error it recorded (None if it recorded none, e.g. it never started)."""
    return {
        source: error(source) or "did not finish (no error recorded)"
        for source in sources
        if result(source) is None
    }


def check_sources(failed: dict[str, str], optional: Iterable[str]) -> dict:
    """The gate between ingestion and dbt: raise RequiredSourceFailed, naming each required
    source that failed and its error; else return the optional ones that failed as
    `stale_sources` (the marts are built without their new data)."""
    optional = set(optional)
    required = {source: error for source, error in failed.items() if source not in optional}
    if required:
        raise RequiredSourceFailed(
            "required source(s) failed to load, so the marts are not built: "
            + "; ".join(f"{source}: {error}" for source, error in required.items())
            + ". To build the marts without a source's new data when it fails, name it in "
            "CRM360_OPTIONAL_SOURCES."
        )
    return {"stale_sources": dict(failed)}


def build_report(
    run_id: str,
    dag_id: str,
    as_of: date,
    sources: list[str],
    pull: Callable[[str], Any],
    settings: Settings,
) -> dict:
    """Assemble the report from the steps' results; `pull(task_id)` returns None if missing."""
    report: dict[str, Any] = {"run_id": run_id, "dag_id": dag_id, "as_of_date": as_of.isoformat()}
    stages, failed_at = {}, None
    ingested, skipped, notes = {}, {}, []
    gate = pull("check_sources")
    stale = gate["stale_sources"] if gate else {}
    for source in sources:
        result = pull(f"ingest_{source}")
        if result is None:
            if source not in stale:  # an optional source's failure does not fail the run
                failed_at = failed_at or f"ingest_{source}"
            continue
        stages[f"ingest_{source}"] = result["seconds"]
        if result.get("skipped"):
            skipped[source] = {"reason": result["skipped"], "left_empty": result.get("feeds", [])}
            continue
        notes += result.get("notes", [])
        loads = result["loads"]
        ingested[source] = {
            "rows_read": sum(x["rows_read"] for x in loads),
            "rows_loaded": sum(x["rows_loaded"] for x in loads),
            "rows_quarantined": sum(x["rows_quarantined"] for x in loads),
            "loads": len(loads),
        }
    report["sources"] = ingested
    report["skipped_sources"] = skipped
    report["stale_sources"] = stale
    report["source_notes"] = notes
    for task_id, key in (
        ("dbt_staging", "dbt_staging"),
        ("resolve_identities", "identity"),
        ("erase_personal_data", "erasure"),
        ("dbt_build", "dbt"),
        ("quality_gate", "quality"),
        ("publish_marts", "published"),
    ):
        result = pull(task_id)
        if result is None:
            failed_at = failed_at or task_id
            continue
        stages[task_id] = result.pop("seconds", None)
        report[key] = result
    report["stage_seconds"] = stages
    if "quality" not in report:  # the gate failed (no XCom): what it stored
        gate = _gate_run(settings, run_id)
        if gate:
            report["quality"] = gate
    report["marts"] = _mart_row_counts(settings)
    report["status"] = "success" if failed_at is None else f"failed at {failed_at}"
    return report


def build_audience_report(run_id: str, exports: dict | None, published: dict | None) -> dict:
    """The report of a crm360_audiences run: which marts it exported (the daily run's id, as-of
    date and gate result), each audience's size, and the export's duration."""
    marts = (exports or {}).get("marts") or published or {}
    report: dict[str, Any] = {
        "run_id": run_id,
        "dag_id": "crm360_audiences",
        # the marts' date; today's only when the export failed before any marts were published
        "as_of_date": marts.get("as_of_date") or datetime.now(UTC).date().isoformat(),
        "marts_run_id": marts.get("run_id"),
        "quality": marts.get("quality", {}),
        "stage_seconds": {},
    }
    if exports is None:
        report["status"] = "failed at export_audiences"
    else:
        report["exports"] = {"audiences": exports["audiences"]}
        report["stage_seconds"]["export_audiences"] = exports.get("seconds")
        report["status"] = "success"
    return report


def _gate_run(settings: Settings, run_id: str) -> dict | None:
    """The quality gate's stored result of a run, if it ran."""
    if not settings.warehouse.exists():
        return None
    with connect(settings.warehouse, read_only=True) as con:
        exists = con.execute(
            "select count(*) from duckdb_tables() "
            "where schema_name = 'quality' and table_name = 'gate_runs'"
        ).fetchall()[0][0]
        if not exists:
            return None
        rows = con.execute(
            "select status, expectations, failed_critical, failed_warning, data_docs "
            "from quality.gate_runs where run_id = ? order by validated_at desc limit 1",
            [run_id],
        ).fetchall()
    if not rows:
        return None
    status, expectations, critical, warning, docs = rows[0]
    return {"status": status, "expectations": expectations, "failed_critical": critical,
            "failed_warning": warning, "data_docs": docs}  # fmt: skip


def _mart_row_counts(settings: Settings) -> dict[str, int]:
    if not settings.warehouse.exists():
        return {}
    with connect(settings.warehouse, read_only=True) as con:
        tables = con.execute(
            "select table_name from information_schema.tables "
            "where table_schema = 'marts' order by 1"
        ).fetchall()
        return {
            t: con.execute(f'select count(*) from marts."{t}"').fetchone()[0] for (t,) in tables
        }


def store_report(report: dict, settings: Settings) -> None:
    with connect(settings.warehouse) as con:
        con.execute(_DDL)
        con.execute(
            "insert or replace into ops.run_reports values (?, ?, ?, ?, ?, ?)",
            [report["run_id"], report["dag_id"], report["as_of_date"], report["status"],
             json.dumps(report, ensure_ascii=False, default=str), datetime.now(UTC)],
        )  # fmt: skip


def _quality_lines(quality: dict | None) -> list[str]:
    if not quality:
        return []
    lines = [f"  data quality: {quality['status']} ({quality.get('expectations', 0)} expectations)"]
    if quality.get("data_docs"):
        lines.append(f"  data docs: {quality['data_docs']}")
    return lines


def _source_lines(report: dict) -> list[str]:
    """Per source: rows read, loaded, quarantined; then the sources skipped or stale."""
    lines = []
    if report.get("sources"):
        lines.append(f"  {'source':<10}{'read':>12}{'loaded':>12}{'quarantined':>13}{'seconds':>9}")
    for source, counts in report.get("sources", {}).items():
        seconds = report["stage_seconds"].get(f"ingest_{source}") or 0
        lines.append(
            f"  {source:<10}{counts['rows_read']:>12,}{counts['rows_loaded']:>12,}"
            f"{counts['rows_quarantined']:>13,}{seconds:>9.1f}"
        )
    for source, skip in report.get("skipped_sources", {}).items():
        lines.append(f"  {source}: skipped, {skip['reason']}")
        lines += [f"    left empty: {item}" for item in skip["left_empty"]]
    for source, error in report.get("stale_sources", {}).items():
        lines.append(f"  {source}: stale, failed to load (optional source): {error}")
    lines += [f"  no data: {note}" for note in report.get("source_notes", [])]
    return lines


def format_report(report: dict) -> str:
    lines = [f"run {report['run_id']} as of {report['as_of_date']}: {report['status']}"]
    if report.get("marts_run_id"):
        lines.append(f"  marts of run {report['marts_run_id']}")
    lines += _source_lines(report)
    if "identity" in report:
        ident = report["identity"]
        lines.append(
            f"  identity: {ident['linked_records']:,} records -> {ident['customers']:,} customers "
            f"({ident['probabilistic_links']:,} linked by Splink; {ident['merges']} merged, "
            f"{ident['splits']} split, {ident['unlinkable_records']:,} unlinkable records)"
        )
    if report.get("erasure", {}).get("customers_erased"):
        erased = report["erasure"]
        lines.append(
            f"  erasure: {erased['customers_erased']:,} people erased on request "
            f"({erased['raw_rows_anonymised']:,} source rows anonymised, "
            f"{erased.get('export_rows_erased', 0):,} rows removed from earlier exports)"
        )
    for name, rows in report.get("marts", {}).items():
        lines.append(f"  mart {name}: {rows:,} rows")
    lines.extend(_quality_lines(report.get("quality")))
    for audience in report.get("exports", {}).get("audiences", []):
        lines.append(
            f"  audience {audience['audience']}: {audience['rows']:,} exported, "
            f"{audience.get('control_group', 0):,} held back, {audience.get('suppressed', 0):,} "
            f"suppressed (+{audience.get('added', 0):,} / -{audience.get('removed', 0):,})"
        )
    for stage, seconds in report["stage_seconds"].items():
        if not stage.startswith("ingest_") and seconds is not None:
            lines.append(f"  {stage}: {seconds:.1f} s")
    return "\n".join(lines)


def describe_task(task: dict) -> str:
    """How a task instance ended (`task_instance` row: state, try_number, max_tries, duration),
    e.g. `succeeded in 1.2 s` or `failed on try 1 of 3 after 0.1 s, not retried`."""
    state, seconds = task.get("state"), task.get("duration") or 0
    tries = f"try {task.get('try_number')} of {(task.get('max_tries') or 0) + 1}"
    if state == "success":
        return f"succeeded in {seconds:.1f} s"
    if state == "up_for_retry":
        return f"failed on {tries} after {seconds:.1f} s; it will be retried"
    if state == "failed":
        # a try left over: the retry policy failed it at once (a contract or configuration error)
        tries_left = (task.get("try_number") or 0) <= (task.get("max_tries") or 0)
        return f"failed on {tries} after {seconds:.1f} s" + (", not retried" if tries_left else "")
    return str(state or "not run")


def format_failure(
    dag_id: str,
    as_of: date,
    run_id: str,
    tasks: list[dict],
    errors: dict[str, str],
    report: dict | None = None,
) -> str:
    """Why a DAG run failed, for a person: each failed task with how it ended and its error,
    the tasks that did not run because of it, and the run's report when it has one."""
    lines = [f"{dag_id} failed for {as_of.isoformat()} (run {run_id})."]
    for task in tasks:
        if task["state"] == "failed":
            lines.append(f"  {task['task_id']} {describe_task(task)}:")
            error = errors.get(task["task_id"], "(no exception found in the log)").splitlines()
            lines += [f"    {line}" for line in error[:30]]
            if len(error) > 30:
                lines.append(f"    ... {len(error) - 30} more lines in the log")
    not_run = [t["task_id"] for t in tasks if t["state"] == "upstream_failed"]
    if not_run:
        lines.append("  not run, as a task before them failed: " + ", ".join(not_run))
    if report:
        lines.append(f"\nRun report of {dag_id} (ops.run_reports):\n" + format_report(report))
    return "\n".join(lines)
