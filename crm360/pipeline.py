"""The daily pipeline's steps, one function per Airflow task.

Each step takes plain values (run id, dates) and returns a small JSON-able dict for XCom and
the run report. Settings are read when a step runs, never at import, so DAG parsing stays fast.
"""

from __future__ import annotations

import logging
from datetime import date, datetime

from crm360.settings import Settings, load_settings
from crm360.warehouse import connect

log = logging.getLogger(__name__)


def ingest_source(
    source: str, run_id: str, as_of: datetime, settings: Settings | None = None
) -> list[dict]:
    """Load one source system's new data (everything dated before `as_of`) into `raw`."""
    from ingestion import load_source

    settings = settings or load_settings()
    with connect(settings.warehouse) as con:
        results = load_source(source, con, settings.source_dir, as_of, run_id)
    return [r.as_dict() for r in results]


def build_marts(as_of: date, settings: Settings | None = None) -> dict:
    """`dbt build` (seeds, models, data tests and unit tests) as of the given date."""
    from crm360.dbt import run_dbt

    settings = settings or load_settings()
    dbt_vars = {"as_of_date": as_of.isoformat(), "dormant_days": settings.dormant_days}
    return run_dbt(settings, ["build"], dbt_vars)


def check_quality(run_id: str, settings: Settings | None = None) -> dict:
    """Run the GX gate; raises QualityGateFailed on a critical failure."""
    from crm360.quality import run_gate

    settings = settings or load_settings()
    return run_gate(settings, run_id).summary()


def export_audiences(run_id: str, quality: dict, settings: Settings | None = None) -> list[dict]:
    """Publish every audience; refuses to run unless the gate passed (or only warned)."""
    from activation.audiences import load_audiences
    from activation.publish import publish_audience

    if quality.get("status") not in ("passed", "warning"):
        raise RuntimeError(f"refusing to export: quality gate status is {quality.get('status')!r}")
    settings = settings or load_settings()
    with connect(settings.warehouse, read_only=True) as con:
        return [
            publish_audience(con, audience, settings.export_dir, run_id, quality)
            for audience in load_audiences()
        ]


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
