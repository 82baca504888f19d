"""Ingestion: one module per source system, each loading into the DuckDB `raw` schema.

Every module exposes `load(con, source_dir, as_of, run_id) -> list[LoadResult]`; its contract
is `contracts/<source>.yml` and where its data lives is `config/sources.yml`.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

    from ingestion.raw import LoadResult

log = logging.getLogger(__name__)

# In load order; the DAG creates one task per source from this list.
SOURCES = ("crm", "shop", "support", "web", "email", "social", "spend")


@dataclass
class SourceOutcome:
    """What one source's ingestion did: its loads; `skipped`, why the source was not read at
    all; `notes`, objects that have no data yet and why, with what the marts lose."""

    source: str
    loads: list[LoadResult] = field(default_factory=list)
    skipped: str | None = None
    notes: list[str] = field(default_factory=list)
    feeds: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "source": self.source,
            "loads": [r.as_dict() for r in self.loads],
            "skipped": self.skipped,
            "notes": self.notes,
            "feeds": self.feeds if self.skipped or self.notes else [],
        }


def ingest(
    source: str,
    con: duckdb.DuckDBPyConnection,
    source_dir: Path,
    as_of: datetime,
    run_id: str | None = None,
    fetched: object | None = None,
) -> SourceOutcome:
    """Load one source as the sources config says (load_source), or skip it when the config
    leaves it out or disables it; either way every raw table of the source exists afterwards,
    and the outcome says which objects still have no data."""
    from ingestion.config import ConfigError, source_config
    from ingestion.contracts import contract_feeds, load_contract, reads_files
    from ingestion.raw import ensure_raw_tables

    config = source_config(source)
    contracts = load_contract(source)
    outcome = SourceOutcome(source, feeds=contract_feeds(source))
    if config is None:
        outcome.skipped = "not in the sources config"
    elif not config.enabled:
        outcome.skipped = "disabled in the sources config (enabled: false)"
    else:
        if reads_files(contracts) and not source_dir.is_dir():
            raise ConfigError(
                f"{source}: the source folder {source_dir} does not exist (set CRM360_SOURCE_DIR)"
            )
        outcome.loads = load_source(source, con, source_dir, as_of, run_id, fetched)
    ensure_raw_tables(con, list(contracts.values()))
    if outcome.skipped:
        log.warning(
            "%s: skipped, %s; left empty: %s",
            source,
            outcome.skipped,
            "; ".join(outcome.feeds) or "nothing",
        )
        return outcome
    outcome.notes = _objects_without_data(con, source, contracts, config, source_dir)
    for note in outcome.notes:
        log.warning("%s", note)
    return outcome


def _objects_without_data(con, source: str, contracts: dict, config, source_dir: Path) -> list:
    """A note for each object of the source that no load has ever brought a row to."""
    from ingestion.contracts import FILE_FORMATS

    loaded = dict(
        con.execute(
            "select object, sum(rows_loaded) from raw._loads where source = ? group by 1",
            [source],
        ).fetchall()
    )
    notes = []
    for name, contract in contracts.items():
        if loaded.get(name):
            continue
        obj = config.objects.get(name)
        if obj is not None and not obj.enabled:
            why = "disabled in the sources config"
        elif contract.format in FILE_FORMATS and (obj is None or not obj.files):
            why = "not in the sources config"
        elif contract.format in FILE_FORMATS:
            why = f"no rows yet from files {obj.files!r} under {source_dir}"
        else:
            why = "no rows yet"
        notes.append(f"{source}.{name}: {why}")
    return notes


def load_source(
    source: str,
    con: duckdb.DuckDBPyConnection,
    source_dir: Path,
    as_of: datetime,
    run_id: str | None = None,
    fetched: object | None = None,
) -> list[LoadResult]:
    """Load one source; `fetched` is what `prefetch` read for it before the warehouse was
    opened (sources read over the network)."""
    if source not in SOURCES:
        raise KeyError(f"unknown source {source!r}; known: {', '.join(SOURCES)}")
    module = importlib.import_module(f"ingestion.{source}")
    if fetched is not None:
        return module.load(con, source_dir, as_of, run_id, fetched=fetched)
    return module.load(con, source_dir, as_of, run_id)


def prefetch(source: str, warehouse: Path, source_dir: Path, as_of: datetime) -> object | None:
    """What a source reads over the network, read before the warehouse is opened for the load,
    so that a slow API does not hold the warehouse's one write lock; the warehouse is opened
    only for a moment, to read the watermark. None for sources read otherwise, or when nothing
    is due."""
    from crm360.warehouse import connect

    module = importlib.import_module(f"ingestion.{source}")
    if not hasattr(module, "fetch"):
        return None
    with connect(warehouse) as con:
        since = module.watermark(con)
    return module.fetch(source_dir, as_of, since)
