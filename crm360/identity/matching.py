"""Probabilistic matching of CRM contacts and shop accounts with Splink on DuckDB.

Splink runs in its own in-memory DuckDB database (its working tables never touch the
warehouse); the records it compares are copied in through Arrow. The model is trained on every
run (seeded): the match prior from the deterministic rules, u probabilities from random pairs,
m probabilities by expectation maximisation on the configured blocks. Comparisons, blocks and
the threshold come from config/identity.yml.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from crm360.identity.config import Probabilistic

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)


@dataclass
class MatchResult:
    pairs: pa.Table  # record_id_l, record_id_r, match_probability, match_weight
    compared: int  # pairs scored (after blocking)
    seconds: float
    parameters: dict  # the trained model, as Splink saves it


def _comparison(spec):
    import splink.comparison_library as cl

    if spec.kind == "exact":
        return cl.ExactMatch(spec.column)
    if spec.kind == "jaro_winkler":
        return cl.JaroWinklerAtThresholds(spec.column, list(spec.thresholds))
    return cl.LevenshteinAtThresholds(spec.column, [int(t) for t in spec.thresholds])


def _blocks(rules):
    from splink import block_on

    return [block_on(*columns) for columns in rules]


def _memory_config() -> dict:
    """DuckDB's memory limit for the matching database: CRM360_SPLINK_MEMORY_LIMIT (e.g.
    '8GB'), else DuckDB's default (80% of RAM). Beyond it, DuckDB spills to a temp folder."""
    limit = os.environ.get("CRM360_SPLINK_MEMORY_LIMIT")
    return {"memory_limit": limit} if limit else {}


def _compared_pairs(db_api, config: Probabilistic) -> int:
    """Pairs the prediction blocking rules put together (each pair once), counted exactly by
    Splink's blocking analysis; the prediction itself keeps only the pairs above the
    threshold."""
    from splink.blocking_analysis import count_comparisons_from_blocking_rules

    counts = count_comparisons_from_blocking_rules(
        db_api.register("match_input"),
        blocking_rules=_blocks(config.blocking_rules),
        link_type="dedupe_only",
        unique_id_column_name="record_id",
        record_sample_proportion=1.0,
    )
    return int(counts[-1]["cumulative_comparison_count"]) if counts else 0


def match_records(records: pa.Table, config: Probabilistic) -> MatchResult:
    """Score the pairs of `records` (a `record_id` column plus the match columns) that share a
    block; return the pairs at or above the threshold."""
    import duckdb
    from splink import DuckDBAPI, Linker, SettingsCreator

    started = time.monotonic()
    spill = tempfile.mkdtemp(prefix="crm360-splink-")
    mem = duckdb.connect(config={"temp_directory": spill, **_memory_config()})
    mem.register("records_arrow", records)
    mem.execute("create table match_input as select * from records_arrow")
    mem.unregister("records_arrow")
    db_api = DuckDBAPI(mem)
    settings = SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="record_id",
        comparisons=[_comparison(c) for c in config.comparisons],
        blocking_rules_to_generate_predictions=_blocks(config.blocking_rules),
        retain_matching_columns=False,
        retain_intermediate_calculation_columns=False,
    )
    linker = Linker(db_api.register("match_input"), settings, log_level=logging.WARNING)
    if config.prior_rules:
        linker.training.estimate_probability_two_random_records_match(
            _blocks(config.prior_rules), recall=config.prior_recall
        )
    linker.training.estimate_u_using_random_sampling(
        max_pairs=config.u_sample_pairs, seed=config.seed
    )
    for rule in _blocks(config.em_blocking_rules):
        linker.training.estimate_parameters_using_expectation_maximisation(
            rule, estimate_without_term_frequencies=True
        )
    # only pairs at or above the threshold are kept: at a million people the blocks yield
    # tens of millions of scored pairs, which need not be stored
    predictions = linker.inference.predict(threshold_match_probability=config.threshold)
    compared = _compared_pairs(db_api, config)
    pairs = mem.sql(
        f"""
        select least(record_id_l, record_id_r) as record_id_l,
            greatest(record_id_l, record_id_r) as record_id_r,
            match_probability, match_weight,
        from {predictions.physical_name}
        order by match_weight desc, 1, 2
        """
    ).to_arrow_table()
    parameters = linker.misc.save_model_to_json()
    mem.close()
    shutil.rmtree(spill, ignore_errors=True)
    seconds = round(time.monotonic() - started, 3)
    log.info(
        "splink: %d pairs compared, %d above %.3f in %.1f s",
        compared,
        pairs.num_rows,
        config.threshold,
        seconds,
    )
    return MatchResult(pairs, compared, seconds, parameters)
