"""The daily pipeline's steps, one function per Airflow task.

Each step takes plain values (run id, dates) and returns a small JSON-able dict for XCom and
the run report. Settings are read when a step runs, never at import, so DAG parsing stays fast.
"""

from __future__ import annotations

import importlib
import logging
import time
from datetime import date, datetime

from crm360.settings import Settings, load_settings
from crm360.warehouse import connect

log = logging.getLogger(__name__)

# Errors a retry cannot fix: the source breaks its contract, or the configuration is invalid.
# Named, not imported, so that DAG parsing stays cheap; a name that does not resolve is skipped.
PERMANENT_ERRORS = (
    "ingestion.contracts.ContractError",
    "ingestion.config.ConfigError",
    "crm360.identity.config.IdentityConfigError",
    "activation.audiences.AudienceDefinitionError",
)


def _error_class(name: str) -> type | None:
    module, _, attribute = name.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attribute, None)
    except ImportError:
        return None


def is_permanent(exc: BaseException) -> bool:
    """Whether retrying cannot help: `exc` is one of PERMANENT_ERRORS, or its class says so
    with `permanent = True`."""
    if getattr(type(exc), "permanent", False) is True:
        return True
    classes = tuple(c for c in map(_error_class, PERMANENT_ERRORS) if isinstance(c, type))
    return isinstance(exc, classes)


def _seconds_since(started: float) -> float:
    """Wall seconds of a step, as the run report shows them."""
    return round(time.monotonic() - started, 3)


def ingest_source(
    source: str, run_id: str, as_of: datetime, settings: Settings | None = None
) -> dict:
    """Load one source system's new data (everything dated before `as_of`) into `raw`, or
    skip it when the sources config leaves it out. Every configuration file is checked first:
    a mistake stops the run before anything is written."""
    from crm360.config_check import check_configuration
    from ingestion import ingest, prefetch

    settings = settings or load_settings()
    started = time.monotonic()
    check_configuration(settings)
    # a source read over the network is read before the warehouse's write lock is taken
    fetched = prefetch(source, settings.warehouse, settings.source_dir, as_of)
    with connect(settings.warehouse) as con:
        outcome = ingest(source, con, settings.source_dir, as_of, run_id, fetched)
    return {**outcome.as_dict(), "seconds": _seconds_since(started)}


def _dbt_build(selection: list[str], as_of: date, settings: Settings | None) -> dict:
    from crm360.dbt import DAILY_BUILD_EXCLUDED_TYPES, run_dbt_as_of

    settings = settings or load_settings()
    started = time.monotonic()
    args = ["build", *selection, "--exclude-resource-type", *DAILY_BUILD_EXCLUDED_TYPES]
    summary = run_dbt_as_of(settings, args, as_of)
    return {**summary, "seconds": _seconds_since(started)}


def build_staging(as_of: date, settings: Settings | None = None) -> dict:
    """`dbt build` of the staging models (and their tests): what identity resolution reads."""
    return _dbt_build(["--select", "tag:staging"], as_of, settings)


def resolve_identities(as_of: date, run_id: str, settings: Settings | None = None) -> dict:
    """Link every source record to a stable customer id (writes the `identity` schema)."""
    from crm360.identity import load_config, resolve

    settings = settings or load_settings()
    config = load_config(settings.identity_config)
    started = time.monotonic()
    with connect(settings.warehouse) as con:
        summary = resolve(con, as_of, run_id, config)
    return {**summary, "seconds": _seconds_since(started)}


def build_marts(as_of: date, settings: Settings | None = None) -> dict:
    """`dbt build` of everything after staging (seeds, models, snapshots and data tests) as of
    the given date."""
    return _dbt_build(["--exclude", "tag:staging"], as_of, settings)


def check_quality(run_id: str, settings: Settings | None = None) -> dict:
    """Run the GX gate; raises QualityGateFailed on a critical failure."""
    from crm360.quality import run_gate

    settings = settings or load_settings()
    started = time.monotonic()
    summary = run_gate(settings, run_id).summary()
    return {**summary, "seconds": _seconds_since(started)}


def erase_personal_data(as_of: date, run_id: str, settings: Settings | None = None) -> dict:
    """Anonymise everyone with a new deletion request in every table, then scrub them out of
    the files written before: earlier exports, Data Docs and logs (crm360.privacy)."""
    from crm360.airflow_env import default_airflow_home
    from crm360.privacy.erasure import erase
    from crm360.privacy.files import scrub_exports, scrub_text_files
    from crm360.privacy.keys import key_path, read_key
    from ingestion.contracts import all_contracts

    settings = settings or load_settings()
    started = time.monotonic()
    contracts = all_contracts()
    key = read_key(key_path(settings.warehouse))
    airflow_home = default_airflow_home(settings)

    def scrub_files(result) -> dict:
        return {
            "export_rows_erased": scrub_exports(
                settings.export_dir, result.customer_ids, result.values
            ),
            "files_scrubbed": scrub_text_files([settings.gx_dir, airflow_home], result.values),
        }

    with connect(settings.warehouse) as con:
        result = erase(con, run_id, as_of, key, contracts, scrub_files)
    summary = result.summary()
    return {**summary, "seconds": _seconds_since(started)}


def _compact_after_erasure(settings: Settings) -> bool:
    """Rewrite the warehouse when an erasure left freed pages that may hold erased values."""
    from crm360.warehouse import compact

    with connect(settings.warehouse) as con:
        pending = (
            con.execute(
                "select count(*) from information_schema.tables "
                "where table_schema = 'privacy' and table_name = 'erasures'"
            ).fetchone()[0]
            and con.execute(
                "select count(*) from privacy.erasures where compacted_at is null"
            ).fetchone()[0]
        )
    if not pending:
        return False
    compact(settings.warehouse)
    with connect(settings.warehouse) as con:
        con.execute("update privacy.erasures set compacted_at = now() where compacted_at is null")
    return True


def publish_marts(settings: Settings | None = None) -> dict:
    """Publish this run's state: the exports' copy (unmasked, private) and the analysts'
    read-only copy (personal data masked unless CRM360_PUBLISHED_PII=plain), each swapped in
    in one step. A warehouse an erasure changed is compacted first."""
    from crm360.privacy.keys import key_path, read_key
    from crm360.privacy.masking import write_masked_copy
    from crm360.settings import duckdb_block_memory, published_pii
    from crm360.warehouse import publish_read_only_copy

    settings = settings or load_settings()
    started = time.monotonic()
    mode = published_pii()
    compacted = _compact_after_erasure(settings)
    publish_read_only_copy(settings.warehouse, settings.activation_warehouse)
    write = None
    if mode == "masked":
        key = read_key(key_path(settings.warehouse))
        memory = duckdb_block_memory()

        def write(source, target):
            write_masked_copy(source, target, key, memory)

    path = publish_read_only_copy(settings.warehouse, settings.published_warehouse, write)
    return {
        "path": str(path),
        "personal_data": mode,
        "compacted": compacted,
        "seconds": _seconds_since(started),
    }


def _gated_copy(settings: Settings):
    """The copy exports read: the activation copy (an installation published before it
    existed: the analysts' copy, which was unmasked then)."""
    if settings.activation_warehouse.exists():
        return settings.activation_warehouse
    return settings.published_warehouse


def published_marts_state(settings: Settings | None = None) -> dict:
    """Which run the analysts' copy holds and what its quality gate said: `run_id`,
    `as_of_date` and `quality` (status, expectations run, warnings)."""
    settings = settings or load_settings()
    with connect(_gated_copy(settings), read_only=True) as con:
        run_id = con.execute(
            "select arg_max(run_id, validated_at) from quality.validation_results"
        ).fetchone()[0]
        outcomes = con.execute(
            "select severity, success and computed, expectation_type, table_name, column_name "
            "from quality.validation_results where run_id = ? order by all",
            [run_id],
        ).fetchall()
        as_of = con.execute("select max(as_of_date) from marts.customer_360").fetchone()[0]
    failed = [f"{kind} on {table}.{column}" if column else f"{kind} on {table}"
              for _, ok, kind, table, column in outcomes if not ok]  # fmt: skip
    critical = any(severity == "critical" and not ok for severity, ok, *_ in outcomes)
    status = "failed" if critical or not outcomes else "warning" if failed else "passed"
    return {
        "run_id": run_id,
        "as_of_date": as_of.isoformat(),
        "quality": {"status": status, "expectations": len(outcomes), "failed": failed},
    }


def export_audiences(run_id: str, quality: dict, settings: Settings | None = None) -> dict:
    """Publish every audience from the analysts' copy of the marts (what the gate passed) and
    record its members and control group in the warehouse; refuses to run unless the gate
    passed (or only warned). Every definition is validated before any file is written. Then
    removes run folders older than CRM360_EXPORT_RETENTION_DAYS (activation.retention)."""
    from datetime import UTC

    from activation.audiences import load_audiences
    from activation.publish import publish_audience, record_members
    from activation.retention import prune_exports
    from crm360.settings import export_retention_days

    if quality.get("status") not in ("passed", "warning"):
        raise RuntimeError(f"refusing to export: quality gate status is {quality.get('status')!r}")
    settings = settings or load_settings()
    keep_days = export_retention_days()  # a bad value stops the task before anything is written
    started = time.monotonic()
    quality = {k: v for k, v in quality.items() if k != "seconds"}
    audiences = load_audiences()
    with connect(_gated_copy(settings), read_only=True) as con:
        results = [
            (audience, publish_audience(con, audience, settings.export_dir, run_id, quality))
            for audience in audiences
        ]
    with connect(settings.warehouse) as con:
        for audience, result in results:
            record_members(con, audience, run_id, result.pop("members"))
    pruned = prune_exports(settings.export_dir, keep_days, datetime.now(UTC))
    return {
        "audiences": [r for _, r in results],
        "seconds": _seconds_since(started),
        "pruned_export_folders": len(pruned),
    }


def report_run(
    run_id: str, dag_id: str, as_of: date, pull, settings: Settings | None = None
) -> dict:
    """Build, store and log the run report (see crm360.report)."""
    from crm360.report import build_report, format_report, store_report
    from ingestion import SOURCES

    settings = settings or load_settings()
    report = build_report(run_id, dag_id, as_of, list(SOURCES), pull, settings)
    store_report(report, settings)
    log.info("run report\n%s", format_report(report))
    return report


def report_audience_run(
    run_id: str, exports: dict | None, settings: Settings | None = None
) -> dict:
    """Build, store and log the report of a crm360_audiences run."""
    from crm360.report import build_audience_report, format_report, store_report

    settings = settings or load_settings()
    published = None
    if exports is None and _gated_copy(settings).exists():
        published = published_marts_state(settings)
    report = build_audience_report(run_id, exports, published)
    store_report(report, settings)
    log.info("run report\n%s", format_report(report))
    return report


def run_summary(settings: Settings | None = None) -> dict:
    """Headline numbers of the warehouse as it is now (customers, segments, loads)."""
    settings = settings or load_settings()
    with connect(settings.warehouse, read_only=True) as con:
        customers, buyers, contactable, dormant = con.execute(
            "select count(*), count(*) filter (where order_count > 0), "
            "count(*) filter (where is_email_contactable), count(*) filter (where is_dormant) "
            "from marts.customer_360"
        ).fetchone()
        segments = dict(
            con.execute(
                "select rfm_segment, count(*) from marts.customer_rfm group by 1 order by 2 desc"
            ).fetchall()
        )
        quarantined = con.execute("select count(*) from raw._quarantine").fetchone()[0]
    return {
        "customers": customers,
        "buyers": buyers,
        "email_contactable": contactable,
        "dormant": dormant,
        "rfm_segments": segments,
        "rows_quarantined_total": quarantined,
    }
