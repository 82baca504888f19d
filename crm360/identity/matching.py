"""Probabilistic matching of CRM contacts and shop accounts with Splink on DuckDB.

Splink runs in its own in-memory DuckDB database (its working tables never touch the
warehouse); the records it compares are copied in through Arrow. The model is trained on every
run (seeded): the match prior from the deterministic rules, u probabilities from random pairs,
m probabilities by expectation maximisation on the configured blocks. Comparisons, blocks and
the threshold come from config/identity.yml.
"""

from __future__ import annotations

import logging
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


def match_records(records: pa.Table, config: Probabilistic) -> MatchResult:
    """Score the pairs of `records` (a `record_id` column plus the match columns) that share a
    block; return the pairs at or above the threshold."""
    import duckdb
    from splink import DuckDBAPI, Linker, SettingsCreator

    started = time.monotonic()
    mem = duckdb.connect()
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
    predictions = linker.inference.predict()
    name = predictions.physical_name
    compared = mem.execute(f"select count(*) from {name}").fetchone()[0]
    pairs = mem.execute(
        f"""
        select least(record_id_l, record_id_r) as record_id_l,
            greatest(record_id_l, record_id_r) as record_id_r,
            match_probability, match_weight,
        from {name}
        where match_probability >= ?
        order by match_weight desc, 1, 2
        """,
        [config.threshold],
    ).to_arrow_table()
    parameters = linker.misc.save_model_to_json()
    mem.close()
    seconds = round(time.monotonic() - started, 3)
    log.info(
        "splink: %d pairs compared, %d above %.3f in %.1f s",
        compared,
        pairs.num_rows,
        config.threshold,
        seconds,
    )
    return MatchResult(pairs, compared, seconds, parameters)
