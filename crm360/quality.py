"""The data-quality gate: Great Expectations checkpoints over warehouse tables, per layer.

Each checkpoint in `expectations/checkpoints/` validates one suite. A suite's `meta` names its
layer (raw, staging, marts) and either a table (`meta.table`, read with just the columns in
`meta.columns`) or a frame derived here (`meta.derived`: source freshness, RFM segment shares
against the previous successful run). The frame is read from DuckDB and validated by GX's
pandas engine: GX's SQL datasource on DuckDB returns no metric rows (DuckDB drops a pending
result when SQLAlchemy returns the connection to its pool), so every metric here is computed on
the real rows. Run-over-run limits (row counts, segment shares) come from the figures stored
for the previous run whose gate passed, as GX suite parameters; tolerances and freshness ages
are in `config/quality.yml`.

Outcome per run: `failed` when a critical expectation fails or could not be computed (an
expectation without an observed value never counts as a pass), `warning` when only warnings
fail, else `passed`. Every expectation result is stored in `quality.validation_results`.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from pydantic import Field

from crm360.configfile import Strict, load_model
from crm360.settings import Settings
from crm360.warehouse import connect

log = logging.getLogger(__name__)

_RESULTS_DDL = """
create schema if not exists quality;
create table if not exists quality.validation_results (
    run_id varchar not null,
    layer varchar,
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
alter table quality.validation_results add column if not exists layer varchar;
create table if not exists quality.gate_runs (
    run_id varchar not null,
    as_of_date date,
    status varchar not null,
    expectations integer not null,
    failed_critical integer not null,
    failed_warning integer not null,
    compared_with_run_id varchar,
    metrics json,
    data_docs varchar,
    validated_at timestamptz not null
);
"""


class QualityGateFailed(RuntimeError):
    """A critical expectation failed or could not be computed: nothing may be exported."""


@dataclass
class ExpectationOutcome:
    layer: str
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
    as_of: date | None = None
    compared_with_run_id: str | None = None
    metrics: dict = field(default_factory=dict)

    def summary(self) -> dict:
        layers = {}
        for o in self.outcomes:
            counts = layers.setdefault(o.layer, {"expectations": 0, "failed": 0})
            counts["expectations"] += 1
            counts["failed"] += not o.success
        return {
            "status": self.status,
            "expectations": len(self.outcomes),
            "layers": layers,
            "compared_with_run_id": self.compared_with_run_id
            or "none: no previous successful run, run-over-run limits not applied",
            "failed_critical": [o.describe() for o in self.outcomes if o.blocks],
            "failed_warning": [
                o.describe() for o in self.outcomes if o.severity != "critical" and not o.success
            ],
            # sources whose newest row is older than their max_age_days, or that never loaded
            "stale_sources": {
                source: state["state"] + (" (optional)" if state["optional"] else "")
                for source, state in self.metrics.get("source_freshness", {}).items()
                if state["state"] != "fresh"
            },
            "data_docs": self.data_docs,
        }


def _raised(exception_info: Any) -> bool:
    if isinstance(exception_info, dict):
        if exception_info.get("raised_exception"):
            return True
        return any(_raised(v) for v in exception_info.values() if isinstance(v, dict))
    return bool(getattr(exception_info, "raised_exception", False))


def _outcome(layer: str, checkpoint: str, table: str, result: Any) -> ExpectationOutcome:
    config = result.expectation_config
    values = dict(result.result or {})
    computed = not _raised(result.exception_info) and (
        "observed_value" in values or "element_count" in values
    )
    severity = getattr(config.severity, "value", str(config.severity))
    return ExpectationOutcome(
        layer=layer,
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


CONFIG = Path(__file__).resolve().parents[1] / "config" / "quality.yml"


class RunOverRun(Strict):
    customer_360_row_change: float = Field(ge=0)
    segment_share_change: float = Field(ge=0, le=1)
    email_share_drop: float = Field(default=0.1, ge=0, le=1)


class Freshness(Strict):
    table: str = Field(pattern=r"^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$")
    column: str = Field(pattern=r"^[a-z_][a-z0-9_]*$")
    max_age_days: int = Field(gt=0)


class QualityConfig(Strict):
    run_over_run: RunOverRun
    # source name -> its newest record's table and column; sources that are not configured
    # (or disabled) in the sources config are not judged
    freshness: dict[str, Freshness] = {}


def quality_config_path() -> Path:
    return Path(os.environ.get("CRM360_QUALITY_CONFIG", CONFIG))


def load_quality_config(path: Path | None = None) -> dict:
    """The gate's settings (config/quality.yml), validated; ConfigError naming each problem."""
    path = path or quality_config_path()
    return load_model(path, QualityConfig, "quality config").model_dump()


def _judged_sources(config: dict) -> dict:
    """The freshness entries of the sources this company has (configured and enabled)."""
    from ingestion.config import load_sources_config

    sources = load_sources_config()
    return {
        name: spec
        for name, spec in config["freshness"].items()
        if name in sources and sources[name].enabled
    }


def _skipped_source(meta: dict, config: dict) -> str | None:
    """The source of a raw suite's table when the company does not have that source ("every
    source" for the freshness suite when no source is judged)."""
    from ingestion.config import load_sources_config
    from ingestion.contracts import contract_sources, load_contract

    if meta.get("derived") == "freshness":
        return None if _judged_sources(config) else "every source"
    table = meta.get("table") or ""
    if not table.startswith("raw."):
        return None
    sources = load_sources_config()
    for source in contract_sources():
        if any(f"raw.{c.raw_table}" == table for c in load_contract(source).values()):
            block = sources.get(source)
            return source if block is None or not block.enabled else None
    return None


def _suites(gx_dir: Path) -> dict[str, dict]:
    """Checkpoint name -> the suite's `meta` (layer, and table + columns or derived)."""
    suites = {}
    for path in sorted((gx_dir / "expectations").glob("*.json")):
        spec = json.loads(path.read_text(encoding="utf-8"))
        suites[spec["name"]] = spec["meta"]
    return suites


def _previous_run(con, run_id: str) -> tuple[str | None, dict]:
    """The newest other run whose gate passed or only warned, and the figures it stored."""
    exists = con.execute(
        "select count(*) from duckdb_tables() "
        "where schema_name = 'quality' and table_name = 'gate_runs'"
    ).fetchall()[0][0]
    if not exists:
        return None, {}
    rows = con.execute(
        "select run_id, metrics from quality.gate_runs "
        "where status in ('passed', 'warning') and run_id != ? "
        "order by validated_at desc limit 1",
        [run_id],
    ).fetchall()
    return (rows[0][0], json.loads(rows[0][1] or "{}")) if rows else (None, {})


def _as_of(con) -> date | None:
    try:
        return con.execute("select max(as_of_date) from marts.customer_360").fetchall()[0][0]
    except Exception:  # noqa: BLE001 - no marts yet: freshness cannot be judged
        return None


def _freshness_groups(config: dict) -> list[tuple[dict, bool]]:
    """The judged sources' freshness entries in two groups, (required, False) and (optional,
    True), leaving out an empty group. An optional source (CRM360_OPTIONAL_SOURCES) may fail to
    load without stopping the run, so its freshness is judged apart, every expectation a
    warning: it never blocks publishing, and the gate's result still names it stale or never
    loaded. A required source's stays critical."""
    from crm360.settings import optional_sources

    judged, optional = _judged_sources(config), optional_sources()
    groups = [
        ({n: spec for n, spec in judged.items() if (n in optional) == is_optional}, is_optional)
        for is_optional in (False, True)
    ]
    return [(sources, is_optional) for sources, is_optional in groups if sources]


def _table_exists(con, table: str) -> bool:
    schema, name = table.split(".", 1)
    return bool(
        con.execute(
            "select count(*) from duckdb_tables() where schema_name = ? and table_name = ?",
            [schema, name],
        ).fetchall()[0][0]
    )


def _freshness(con, config: dict, as_of: date | None, sources: dict | None = None,
               optional: bool = False):  # fmt: skip
    """One row per source of `sources` (default: every judged source): newest timestamp, its
    age in days at as_of, the limit. For `optional` sources, a raw table that was never created
    (the source never loaded a row) is a row without a timestamp instead of an error."""
    sources = _judged_sources(config) if sources is None else sources
    parts = [
        f"""select '{name}' as source, max(try_cast({spec["column"]} as timestamptz))
                as newest_at, {int(spec["max_age_days"])} as max_age_days
            from {spec["table"]}"""
        if not optional or _table_exists(con, spec["table"])
        else f"""select '{name}' as source, null::timestamptz as newest_at,
                {int(spec["max_age_days"])} as max_age_days"""
        for name, spec in sources.items()
    ]
    at = f"timestamptz '{as_of.isoformat()} 00:00:00+00'" if as_of else "now()"
    return con.sql(
        f"select *, date_diff('day', newest_at, {at}) as age_days "
        f"from ({' union all '.join(parts)}) order by source"
    ).df()


def _segment_shares(con, previous: dict):
    """One row per RFM segment: its share of buyers now, in the previous successful run, and
    the absolute change (null without a previous run)."""
    import pandas as pd

    now = con.sql(
        "select rfm_segment, count(*) / sum(count(*)) over () as share "
        "from marts.customer_rfm group by 1 order by 1"
    ).df()
    before = previous.get("rfm_segment_shares", {})
    segments = sorted(set(now["rfm_segment"]) | set(before))
    shares = dict(zip(now["rfm_segment"], now["share"], strict=True))
    frame = pd.DataFrame({"rfm_segment": segments})
    frame["share"] = [float(shares.get(s, 0.0)) for s in segments]
    frame["previous_share"] = [before.get(s, 0.0) if before else None for s in segments]
    frame["share_change"] = [
        abs(now_ - prev) if prev is not None else None
        for now_, prev in zip(frame["share"], frame["previous_share"], strict=True)
    ]
    return frame


def _to_pandas(relation):
    """A DuckDB relation as pandas with Arrow-backed columns: text stays in Arrow buffers
    (~10x less memory than Python strings on the 20M-row web log) and GX computes on it as on
    any pandas frame.

    Decimals become doubles and dates midnight timestamps: pandas handles Arrow decimals and
    dates one Python object at a time in places (hashing them took 2.3 s of customer_360's 4 s
    fingerprint, when the gate still let GX fingerprint frames). The checks on those columns
    (ranges, nulls) are the same on doubles and timestamps."""
    import pandas as pd
    import pyarrow as pa

    table = relation.to_arrow_table()
    columns = []
    for column in table.schema:
        if pa.types.is_decimal(column.type):
            column = column.with_type(pa.float64())
        elif pa.types.is_date(column.type):
            column = column.with_type(pa.timestamp("s"))
        columns.append(column)
    return table.cast(pa.schema(columns)).to_pandas(types_mapper=pd.ArrowDtype)


def _read_frame(con, meta: dict, config: dict, as_of, previous: dict):
    """A suite's dataframe, or the exception that stopped reading it."""
    try:
        if meta.get("derived") == "freshness":
            return _freshness(con, config, as_of)
        if meta.get("derived") == "rfm_segment_shares":
            return _segment_shares(con, previous)
        table = con.sql(f"select * from {meta['table']}")
        # only the columns the expectations check; a missing one is left out, so that the
        # expectations on it fail as not computed, naming the column
        wanted = [c for c in meta.get("columns") or table.columns if c in table.columns]
        return _to_pandas(table.select(*(f'"{c}"' for c in wanted)) if wanted else table)
    except Exception as error:  # noqa: BLE001 - recorded as a failure, never a pass
        return error


def _batches(con, meta: dict, config: dict, as_of, previous: dict, table: str):
    """(label, frame or the exception that stopped reading it, severity override) per batch a
    suite validates: one, except the freshness suite, validated once for the required sources
    and once, every expectation a warning, for the optional ones (_freshness_groups)."""
    if meta.get("derived") != "freshness":
        yield table, _read_frame(con, meta, config, as_of, previous), None
        return
    try:
        groups = _freshness_groups(config)
    except Exception as error:  # noqa: BLE001 - recorded as a failure, never a pass
        yield table, error, None
        return
    for sources, optional in groups:
        if not optional:
            label, severity = table, None
        else:
            label, severity = f"{table} (optional sources: {', '.join(sources)})", "warning"
        try:
            frame = _freshness(con, config, as_of, sources, optional)
        except Exception as error:  # noqa: BLE001 - recorded as a failure, never a pass
            frame = error
        yield label, frame, severity
        del frame


def _source_states(frame, optional: bool) -> dict:
    """Per source of a freshness frame: newest timestamp, age, limit and state (fresh, stale or
    never loaded), stored with the gate's figures and named in its summary."""
    import pandas as pd

    states = {}
    for row in frame.to_dict("records"):
        newest, age = row["newest_at"], row["age_days"]
        never = newest is None or pd.isna(newest)
        age = None if never or age is None or pd.isna(age) else int(age)
        limit = int(row["max_age_days"])
        states[str(row["source"])] = {
            "optional": optional,
            "newest_at": None if never else pd.Timestamp(newest).isoformat(),
            "age_days": age,
            "max_age_days": limit,
            "state": "never loaded" if never else "fresh" if age <= limit else "stale",
        }
    return states


def _parameters(config: dict, previous: dict) -> dict:
    """GX suite parameters: run-over-run limits from the previous successful run."""
    tolerance = config["run_over_run"]
    rows = previous.get("customer_360_rows")
    change = float(tolerance["customer_360_row_change"])
    email_share = previous.get("customer_360_email_share")
    email_drop = float(tolerance["email_share_drop"])
    return {
        "customer_360_min_rows": int(rows * (1 - change)) if rows else 0,
        "customer_360_max_rows": int(rows * (1 + change)) + 1 if rows else 2**62,
        "segment_share_tolerance": float(tolerance["segment_share_change"]),
        # a company may hold few e-mails; losing many since the last good run is a broken export
        "customer_360_min_email_share": max(email_share - email_drop, 0.0) if email_share else 0.0,
    }


def _unreadable(layer: str, name: str, table: str, error: Exception) -> ExpectationOutcome:
    return ExpectationOutcome(
        layer=layer,
        checkpoint=name,
        table_name=table,
        expectation_type="table_is_readable",
        column_name=None,
        severity="critical",
        success=False,
        computed=False,
        observed_value=f"{type(error).__name__}: {error}"[:500],
        element_count=None,
        unexpected_count=None,
        unexpected_percent=None,
        kwargs={},
    )


def _metrics(frames: dict) -> dict:
    """The figures the next run compares with."""
    metrics = {}
    label, c360 = frames.get("customer_360", (None, None))
    if c360 is not None and not isinstance(c360, Exception):
        metrics["customer_360_rows"] = len(c360)
        if len(c360) and "email" in c360.columns:
            metrics["customer_360_email_share"] = float(c360["email"].notna().mean())
    label, shares = frames.get("rfm_segment_shares", (None, None))
    if shares is not None and not isinstance(shares, Exception):
        metrics["rfm_segment_shares"] = dict(
            zip(shares["rfm_segment"], shares["share"], strict=True)
        )
    return metrics


def _skip_batch_fingerprints() -> None:
    """Stop GX from fingerprinting the frames the gate hands it.

    GX's pandas engine hashes every value of each in-memory batch under its HASH_THRESHOLD
    (1 GB) into a `pandas_data_fingerprint` batch marker, stored with the result and read by
    nothing. The gate's frames are read from the warehouse for this run and named by run id
    and table. At a million customers the hashing took 6.6 s of a 19 s gate. GX already skips
    it for larger frames; a threshold of 0 skips it for all."""
    from great_expectations.execution_engine import pandas_execution_engine

    pandas_execution_engine.HASH_THRESHOLD = 0


def _validate(
    context, name: str, meta: dict, label: str, frame, gate: dict, optional: bool
) -> list[ExpectationOutcome]:
    """Run checkpoint `name` on `frame`; return its outcomes, adding what Data Docs builds to
    `gate["documented"]` and the figures the next run compares with to `gate["metrics"]`."""
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
    )

    layer = meta.get("layer", "marts")
    log.info("validating %s %s (%d rows) with checkpoint %s", layer, label, len(frame), name)
    result = context.checkpoints.get(name).run(
        batch_parameters={"dataframe": frame},
        expectation_parameters=gate["parameters"],
        run_id=RunIdentifier(run_name=gate["run_id"]),
    )
    judged = []
    for identifier, validation in result.run_results.items():
        judged += [_outcome(layer, name, label, r) for r in validation.results]
        suite = ExpectationSuiteIdentifier(name=validation.suite_name)
        gate["documented"] += [identifier, suite]
    gate["metrics"].update(_metrics({name: (label, frame)}))
    if meta.get("derived") == "freshness":
        gate["metrics"].setdefault("source_freshness", {}).update(_source_states(frame, optional))
    return judged


def _judge_suite(context, con, name: str, meta: dict, config: dict, as_of, previous: dict,
                 gate: dict) -> list[ExpectationOutcome]:  # fmt: skip
    """Every outcome of one suite, over each of its batches (_batches): an unreadable frame is
    a failure, a batch's severity override (optional sources' freshness) applies to all."""
    table = meta.get("table") or f"derived:{meta.get('derived')}"
    layer = meta.get("layer", "marts")
    outcomes = []
    for label, frame, severity in _batches(con, meta, config, as_of, previous, table):
        if isinstance(frame, Exception):
            log.error("%s could not be read: %s", label, frame)
            judged = [_unreadable(layer, name, label, frame)]
        else:
            judged = _validate(context, name, meta, label, frame, gate, severity is not None)
        for outcome in judged:
            outcome.severity = severity or outcome.severity
        outcomes.extend(judged)
        del frame
    return outcomes


def run_gate(settings: Settings, run_id: str, raise_on_failure: bool = True) -> GateResult:
    """Validate every suite (raw, staging, marts), store the results and this run's figures,
    and build Data Docs."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    _skip_batch_fingerprints()
    context = gx.get_context(mode="file", context_root_dir=str(settings.gx_dir))
    config = load_quality_config()
    suites = _suites(settings.gx_dir)
    outcomes: list[ExpectationOutcome] = []
    metrics: dict = {}
    documented: list = []  # this run's validation results and their suites, for Data Docs
    with connect(settings.warehouse, read_only=True) as con:
        as_of = _as_of(con)
        previous_run, previous = _previous_run(con, run_id)
        parameters = _parameters(config, previous)
        # one suite's frame in memory at a time: the raw web log alone is ~20M rows at 1M people
        for name, meta in suites.items():
            table = meta.get("table") or f"derived:{meta.get('derived')}"
            skipped = _skipped_source(meta, config)
            if skipped:
                log.info("%s not validated: the source %s is not configured", table, skipped)
                metrics.setdefault("skipped_suites", []).append(name)
                continue
            shared = {"parameters": parameters, "run_id": run_id, "documented": documented,
                      "metrics": metrics}  # fmt: skip
            outcomes += _judge_suite(context, con, name, meta, config, as_of, previous, shared)

    # once, for every checkpoint of the run: a checkpoint action would rebuild the site's index,
    # which reads every stored validation result, once per checkpoint
    if documented:
        context.build_data_docs(resource_identifiers=documented)
    if any(o.blocks for o in outcomes) or not outcomes:
        status = "failed"
    elif any(not o.success for o in outcomes):
        status = "warning"
    else:
        status = "passed"
    docs = settings.gx_dir / "uncommitted" / "data_docs" / "local_site" / "index.html"
    gate = GateResult(
        run_id, status, outcomes, str(docs) if docs.exists() else None,
        as_of=as_of, compared_with_run_id=previous_run, metrics=metrics,
    )  # fmt: skip
    _store(settings, gate)
    log.info("quality gate %s: %s", status, json.dumps(gate.summary(), ensure_ascii=False))
    if gate.data_docs:
        log.info("Data Docs: %s", gate.data_docs)
    if status == "failed" and raise_on_failure:
        problems = "; ".join(gate.summary()["failed_critical"]) or "no expectation was run"
        raise QualityGateFailed(f"quality gate failed, nothing exported: {problems}")
    return gate


def _store(settings: Settings, gate: GateResult) -> None:
    validated_at = datetime.now(UTC)
    rows = [
        (
            gate.run_id,
            o.layer,
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
    columns = (
        "run_id, layer, checkpoint, table_name, expectation_type, column_name, severity, success, "
        "computed, observed_value, element_count, unexpected_count, unexpected_percent, kwargs, "
        "validated_at"
    )
    summary = gate.summary()
    with connect(settings.warehouse) as con:
        con.execute(_RESULTS_DDL)
        if rows:
            placeholders = ", ".join("?" * len(rows[0]))
            con.executemany(
                f"insert into quality.validation_results ({columns}) values ({placeholders})", rows
            )
        con.execute(
            "insert into quality.gate_runs values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                gate.run_id, gate.as_of, gate.status, len(gate.outcomes),
                len(summary["failed_critical"]), len(summary["failed_warning"]),
                gate.compared_with_run_id, json.dumps(gate.metrics), gate.data_docs, validated_at,
            ],
        )  # fmt: skip
