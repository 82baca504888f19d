"""The data-quality gate: Great Expectations checkpoints over warehouse tables.

Each checkpoint in `expectations/checkpoints/` validates one table (its suite's `meta.table`).
The table is read from DuckDB into a dataframe and validated by GX's pandas engine: GX's SQL
datasource on DuckDB returns no metric rows (DuckDB drops a pending result when SQLAlchemy
returns the connection to its pool), so every metric here is computed on the real rows.

Outcome per run: `failed` when a critical expectation fails or could not be computed (an
expectation without an observed value never counts as a pass), `warning` when only warnings
fail, else `passed`. Every expectation result is stored in `quality.validation_results`.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crm360.settings import Settings
from crm360.warehouse import connect

log = logging.getLogger(__name__)

_RESULTS_DDL = """
create schema if not exists quality;
create table if not exists quality.validation_results (
    run_id varchar not null,
    checkpoint varchar not null,
    table_name varchar not null,
    expectation_type varchar not null,
    column_name varchar,
    severity varchar not null,
    success boolean not null,
    computed boolean not null,
    observed_value varchar,
    element_count bigint,
    unexpected_count bigint,
    unexpected_percent double,
    kwargs json,
    validated_at timestamptz not null
);
"""


class QualityGateFailed(RuntimeError):
    """A critical expectation failed or could not be computed: nothing may be exported."""


@dataclass
class ExpectationOutcome:
    checkpoint: str
    table_name: str
    expectation_type: str
    column_name: str | None
    severity: str
    success: bool
    computed: bool
    observed_value: Any
    element_count: int | None
    unexpected_count: int | None
    unexpected_percent: float | None
    kwargs: dict

    @property
    def blocks(self) -> bool:
        return self.severity == "critical" and not (self.success and self.computed)

    def describe(self) -> str:
        what = f"{self.table_name}.{self.column_name}" if self.column_name else self.table_name
        if not self.computed:
            return f"{self.expectation_type} on {what}: could not be computed"
        detail = (
            f"{self.unexpected_count} unexpected of {self.element_count}"
            if self.unexpected_count is not None
            else f"observed {self.observed_value}"
        )
        return f"{self.expectation_type} on {what}: {detail}"


@dataclass
class GateResult:
    run_id: str
    status: str
    outcomes: list[ExpectationOutcome] = field(default_factory=list)
    data_docs: str | None = None

    def summary(self) -> dict:
        return {
            "status": self.status,
            "expectations": len(self.outcomes),
            "failed_critical": [o.describe() for o in self.outcomes if o.blocks],
            "failed_warning": [
                o.describe() for o in self.outcomes if o.severity != "critical" and not o.success
            ],
            "data_docs": self.data_docs,
        }


def _raised(exception_info: Any) -> bool:
    if isinstance(exception_info, dict):
        if exception_info.get("raised_exception"):
            return True
        return any(_raised(v) for v in exception_info.values() if isinstance(v, dict))
    return bool(getattr(exception_info, "raised_exception", False))


def _outcome(checkpoint: str, table: str, result: Any) -> ExpectationOutcome:
    config = result.expectation_config
    values = dict(result.result or {})
    computed = not _raised(result.exception_info) and (
        "observed_value" in values or "element_count" in values
    )
    severity = getattr(config.severity, "value", str(config.severity))
    return ExpectationOutcome(
        checkpoint=checkpoint,
        table_name=table,
        expectation_type=config.type,
        column_name=config.kwargs.get("column"),
        severity=severity,
        success=bool(result.success) and computed,
        computed=computed,
        observed_value=values.get("observed_value"),
        element_count=values.get("element_count"),
        unexpected_count=values.get("unexpected_count"),
        unexpected_percent=values.get("unexpected_percent"),
        kwargs={k: v for k, v in config.kwargs.items() if k != "batch_id"},
    )


def _checkpoint_tables(gx_dir: Path) -> dict[str, str]:
    """Checkpoint name -> warehouse table, from each suite's `meta.table`."""
    tables = {}
    for path in sorted((gx_dir / "expectations").glob("*.json")):
        spec = json.loads(path.read_text(encoding="utf-8"))
        tables[spec["name"]] = spec["meta"]["table"]
    return tables


def run_gate(settings: Settings, run_id: str, raise_on_failure: bool = True) -> GateResult:
    """Validate every checkpointed table, store the results, and build Data Docs."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier

    context = gx.get_context(mode="file", context_root_dir=str(settings.gx_dir))
    outcomes: list[ExpectationOutcome] = []
    tables = _checkpoint_tables(settings.gx_dir)
    with connect(settings.warehouse, read_only=True) as con:
        frames = {name: con.sql(f"select * from {table}").df() for name, table in tables.items()}
    for name, frame in frames.items():
        table = tables[name]
        log.info("validating %s (%d rows) with checkpoint %s", table, len(frame), name)
        checkpoint = context.checkpoints.get(name)
        result = checkpoint.run(
            batch_parameters={"dataframe": frame}, run_id=RunIdentifier(run_name=run_id)
        )
        for validation in result.run_results.values():
            outcomes.extend(_outcome(name, table, r) for r in validation.results)

    if any(o.blocks for o in outcomes) or not outcomes:
        status = "failed"
    elif any(not o.success for o in outcomes):
        status = "warning"
    else:
        status = "passed"
    docs = settings.gx_dir / "uncommitted" / "data_docs" / "local_site" / "index.html"
    gate = GateResult(run_id, status, outcomes, str(docs) if docs.exists() else None)
    _store(settings, gate)
    log.info("quality gate %s: %s", status, json.dumps(gate.summary(), ensure_ascii=False))
    if status == "failed" and raise_on_failure:
        problems = "; ".join(gate.summary()["failed_critical"]) or "no expectation was run"
        raise QualityGateFailed(f"quality gate failed, nothing exported: {problems}")
    return gate


def _store(settings: Settings, gate: GateResult) -> None:
    validated_at = datetime.now(UTC)
    rows = [
        (
            gate.run_id,
            o.checkpoint,
            o.table_name,
            o.expectation_type,
            o.column_name,
            o.severity,
            o.success,
            o.computed,
            None if o.observed_value is None else str(o.observed_value),
            o.element_count,
            o.unexpected_count,
            o.unexpected_percent,
            json.dumps(o.kwargs, default=str, ensure_ascii=False),
            validated_at,
        )
        for o in gate.outcomes
    ]
    with connect(settings.warehouse) as con:
        con.execute(_RESULTS_DDL)
        if rows:
            placeholders = ", ".join("?" * len(rows[0]))
            con.executemany(f"insert into quality.validation_results values ({placeholders})", rows)
