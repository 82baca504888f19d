"""Probabilistic matching of CRM contacts and shop accounts with Splink on DuckDB.

Splink runs in its own in-memory DuckDB database (its working tables never touch the
warehouse); the records it compares are copied in through Arrow. The model is trained
(seeded): the match prior from the deterministic rules, u probabilities from random pairs, m
probabilities by expectation maximisation on the configured blocks, each checked first against
the records (crm360.identity.training): what the records cannot train is left out, and when
nothing can be trained no pair is scored and the result says why. Between trainings
(`retrain_after_days`, `retrain_after_growth`) a run reuses the last model and scores only the
pairs that hold a new or changed record. Comparisons, blocks and the threshold come from
config/identity.yml.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from crm360.identity.config import Probabilistic
from crm360.identity.training import (
    TrainingPlan,
    compared_columns,
    filled_columns,
    plan_training,
    usable_comparisons,
)

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)


@dataclass
class MatchResult:
    pairs: pa.Table  # record_id_l, record_id_r, match_probability, match_weight
    compared: int  # pairs scored in this run (after blocking)
    seconds: float
    parameters: dict  # the trained model, as Splink saves it
    trained: bool  # False: the previous model was reused
    trained_as_of: date | None = None  # set by the caller
    inputs: pa.Table | None = None  # the records compared, as given (set by the caller)
    model_key: str = ""  # the settings the model depends on (set by the caller)
    notes: tuple[str, ...] = ()  # what the training left out or assumed, and why
    skipped: str | None = None  # why no model could be trained (and no pair scored)


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


@dataclass
class PreviousMatch:
    """What the last run left for reusing its model: the model, when and on how many records
    it was trained, the records it compared (record_id and the match columns) and the pairs it
    kept (record_id_l, record_id_r, match_probability, match_weight)."""

    model: dict
    trained_as_of: date
    trained_records: int
    inputs: pa.Table
    pairs: pa.Table


def _settings(plan: TrainingPlan, config: Probabilistic):
    from splink import SettingsCreator

    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="record_id",
        comparisons=[_comparison(c) for c in plan.comparisons],
        blocking_rules_to_generate_predictions=_blocks(config.blocking_rules),
        probability_two_random_records_match=plan.prior,
        retain_matching_columns=False,
        retain_intermediate_calculation_columns=False,
    )


def _train(linker, plan: TrainingPlan, config: Probabilistic) -> None:
    """u from random pairs, then m by EM on each block the records can train (the prior is
    in the settings already)."""
    linker.training.estimate_u_using_random_sampling(
        max_pairs=config.u_sample_pairs, seed=config.seed
    )
    for rule in _blocks(plan.em_rules):
        linker.training.estimate_parameters_using_expectation_maximisation(
            rule, estimate_without_term_frequencies=True
        )


def _reusable(previous: PreviousMatch | None, config: Probabilistic, filled: dict):
    """The previous match, unless its model compares other columns than the records can be
    compared on now (a column that was empty holds values, or the reverse)."""
    if previous is None:
        return None
    comparisons, _ = usable_comparisons(config, filled)
    now, before = {c.column for c in comparisons}, compared_columns(previous.model)
    if now == before:
        return previous
    log.info("splink: the last model compares %s, the records now %s: retraining",
             sorted(before), sorted(now))  # fmt: skip
    return None


def _skipped(plan: TrainingPlan, started: float) -> MatchResult:
    import pyarrow as pa

    log.warning("splink: nothing trained, no pair scored: %s", plan.skipped)
    pairs = pa.table(
        {
            "record_id_l": pa.array([], pa.string()),
            "record_id_r": pa.array([], pa.string()),
            "match_probability": pa.array([], pa.float64()),
            "match_weight": pa.array([], pa.float64()),
        }
    )
    seconds = round(time.monotonic() - started, 3)
    return MatchResult(pairs, 0, seconds, {}, trained=False, notes=plan.notes,
                       skipped=plan.skipped)  # fmt: skip


def _rescore(mem, db_api, linker, previous: PreviousMatch, config: Probabilistic):
    """With the previous model: score only the pairs that hold a new or changed record (new
    with new, new with the rest) and keep the previous scores of every other pair, whose
    records and model are unchanged. Returns the pairs' table name and the pairs scored."""
    from splink.internals.misc import prob_to_match_weight

    mem.register("previous_inputs_arrow", previous.inputs)
    mem.register("previous_pairs_arrow", previous.pairs)
    mem.execute(
        """
        create table changed_input as
        select * from match_input
        where record_id in (select record_id from (
            select * from match_input except select * from previous_inputs_arrow))
        """
    )
    mem.execute("create table unchanged_input as "
                "select * from match_input anti join changed_input using (record_id)")  # fmt: skip
    mem.execute(
        """
        create table kept_pairs as
        select record_id_l, record_id_r, match_probability, match_weight,
        from previous_pairs_arrow
        where record_id_l in (select record_id from unchanged_input)
            and record_id_r in (select record_id from unchanged_input)
        """
    )
    mem.unregister("previous_inputs_arrow")
    mem.unregister("previous_pairs_arrow")
    changed = db_api.register("changed_input")
    scored = []
    if mem.execute("select count(*) from changed_input").fetchall()[0][0]:
        scored.append(linker.inference.predict_within(changed, warning_mode="never"))
        scored.append(linker.inference.predict_between(
            changed, db_api.register("unchanged_input"), warning_mode="never"))  # fmt: skip
    # the threshold as predict() applies it: on the match weight
    weight = prob_to_match_weight(config.threshold)
    union = " union all ".join(
        f"select record_id_l, record_id_r, match_probability, match_weight "
        f"from {df.physical_name} where match_weight >= {weight!r}"
        for df in scored
    )
    mem.execute(
        "create table rescored_pairs as select * from kept_pairs"
        + (f" union all select least(record_id_l, record_id_r), greatest(record_id_l, "
           f"record_id_r), match_probability, match_weight from ({union})" if scored else "")
    )  # fmt: skip
    compared = sum(mem.execute(f"select count(*) from {df.physical_name}").fetchall()[0][0]
                   for df in scored)  # fmt: skip
    return "rescored_pairs", compared


def match_records(
    records: pa.Table, config: Probabilistic, previous: PreviousMatch | None = None
) -> MatchResult:
    """Score the pairs of `records` (a `record_id` column plus the match columns) that share a
    block; return the pairs at or above the threshold. With `previous`, its model is used as
    it is and only the pairs holding a new or changed record are scored (see `_rescore`);
    else (or when the records can now be compared on other columns than the model compares)
    the model is trained on `records`, on what they can train. When they can train nothing,
    no pair is scored and `MatchResult.skipped` says why."""
    import duckdb
    from splink import DuckDBAPI, Linker

    started = time.monotonic()
    spill = tempfile.mkdtemp(prefix="crm360-splink-")
    mem = duckdb.connect(config={"temp_directory": spill, **_memory_config()})
    try:
        mem.register("records_arrow", records)
        mem.execute("create table match_input as select * from records_arrow")
        mem.unregister("records_arrow")
        db_api = DuckDBAPI(mem)
        filled = filled_columns(mem, config)
        previous = _reusable(previous, config, filled)
        if previous is not None:
            linker = Linker(db_api.register("match_input"), previous.model,
                            log_level=logging.WARNING)  # fmt: skip
            table, compared = _rescore(mem, db_api, linker, previous, config)
            notes = ()
        else:
            plan = plan_training(mem, db_api, config, filled)
            for note in plan.notes:
                log.warning("splink training: %s", note)
            if plan.skipped:
                return _skipped(plan, started)
            linker = Linker(db_api.register("match_input"), _settings(plan, config),
                            log_level=logging.WARNING)  # fmt: skip
            _train(linker, plan, config)
            # only pairs at or above the threshold are kept: at a million people the blocks
            # yield tens of millions of scored pairs, which need not be stored
            table = linker.inference.predict(threshold_match_probability=config.threshold)
            table, compared = table.physical_name, _compared_pairs(db_api, config)
            notes = plan.notes
        pairs = mem.sql(
            f"""
            select least(record_id_l, record_id_r) as record_id_l,
                greatest(record_id_l, record_id_r) as record_id_r,
                match_probability, match_weight,
            from {table}
            order by match_weight desc, 1, 2
            """
        ).to_arrow_table()
        parameters = linker.misc.save_model_to_json()
    finally:
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
    return MatchResult(pairs, compared, seconds, parameters, trained=previous is None,
                       notes=notes)  # fmt: skip
