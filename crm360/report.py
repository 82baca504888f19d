"""The run report: what one DAG run did, stored in `ops.run_reports` and printed in the log.

Built from each step's result (XCom): rows read / loaded / quarantined per source, dbt's node
counts, the row count of every mart, the data-quality result, the audiences exported and their
sizes, and each stage's duration. A step that did not finish is reported as such.
"""

from __future__ import annotations

import json
from collections.abc import Callable
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
    ingested = {}
    for source in sources:
        result = pull(f"ingest_{source}")
        if result is None:
            failed_at = failed_at or f"ingest_{source}"
            continue
        loads = result["loads"]
        ingested[source] = {
            "rows_read": sum(x["rows_read"] for x in loads),
            "rows_loaded": sum(x["rows_loaded"] for x in loads),
            "rows_quarantined": sum(x["rows_quarantined"] for x in loads),
            "loads": len(loads),
        }
        stages[f"ingest_{source}"] = result["seconds"]
    report["sources"] = ingested
    for task_id, key in (
        ("dbt_staging", "dbt_staging"),
        ("resolve_identities", "identity"),
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


def format_report(report: dict) -> str:
    lines = [f"run {report['run_id']} as of {report['as_of_date']}: {report['status']}"]
    if report.get("marts_run_id"):
        lines.append(f"  marts of run {report['marts_run_id']}")
    if report.get("sources"):
        lines.append(f"  {'source':<10}{'read':>12}{'loaded':>12}{'quarantined':>13}{'seconds':>9}")
    for source, counts in report.get("sources", {}).items():
        seconds = report["stage_seconds"].get(f"ingest_{source}") or 0
        lines.append(
            f"  {source:<10}{counts['rows_read']:>12,}{counts['rows_loaded']:>12,}"
            f"{counts['rows_quarantined']:>13,}{seconds:>9.1f}"
        )
    if "identity" in report:
        ident = report["identity"]
        lines.append(
            f"  identity: {ident['linked_records']:,} records -> {ident['customers']:,} customers "
            f"({ident['probabilistic_links']:,} linked by Splink; {ident['merges']} merged, "
            f"{ident['splits']} split, {ident['unlinkable_records']:,} unlinkable records)"
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
