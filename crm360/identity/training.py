"""What the records at hand can train, checked before Splink is asked to train on them.

Splink stops on data that lacks what a setting needs: prior rules that find no pair leave the
match prior at 0, whose match weight is log2(0) (a `math domain error`); an EM block with no
pair raises `EMTrainingException`; an EM block of a handful of pairs trains, but on nothing
(m probabilities of 1 for the few levels seen, Splink's defaults for the rest); a comparison on
a column no record fills gets neither u nor m. Person records often carry no e-mail or phone at
all, so every setting is checked against the records first, in the match database (values per
column, pairs per block), and what cannot be trained is left out of this training with the
reason. When nothing can be trained, `TrainingPlan.skipped` says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from crm360.identity.config import Comparison, Probabilistic

if TYPE_CHECKING:
    import duckdb

Rule = tuple[str, ...]


@dataclass(frozen=True)
class TrainingPlan:
    """The comparisons and EM blocks to train, the match prior, and why anything configured
    was left out (`notes`), or why nothing can be trained (`skipped`)."""

    comparisons: tuple[Comparison, ...] = ()
    em_rules: tuple[Rule, ...] = ()
    prior: float | None = None  # probability that two random records match
    notes: tuple[str, ...] = ()
    skipped: str | None = None


def _name(rule: Rule) -> str:
    return f"[{', '.join(rule)}]"


def filled_columns(mem: duckdb.DuckDBPyConnection, config: Probabilistic) -> dict[str, int]:
    """The number of records that hold a value, per column a comparison or rule uses, and the
    number of records (under the key "")."""
    columns = sorted(
        {c.column for c in config.comparisons}
        | {c for rule in (*config.prior_rules, *config.em_blocking_rules) for c in rule}
    )
    counts = ", ".join(f'count("{c}")' for c in columns)
    row = mem.execute(f"select count(*), {counts} from match_input").fetchall()[0]
    return dict(zip(["", *columns], row, strict=True))


def usable_comparisons(
    config: Probabilistic, filled: dict[str, int]
) -> tuple[tuple[Comparison, ...], list[str]]:
    """The comparisons whose column at least two records hold (there is a pair to estimate u
    and m on), and a note for each one left out."""
    kept, notes = [], []
    for comparison in config.comparisons:
        holders = filled[comparison.column]
        if holders >= 2:
            kept.append(comparison)
            continue
        held = "no record holds" if holders == 0 else "only one record holds"
        notes.append(f"comparison {comparison.column}: left out, {held} a value")
    return tuple(kept), notes


def compared_columns(model: dict) -> set[str]:
    """The columns a saved Splink model compares."""
    return {c["output_column_name"] for c in model["comparisons"]}


def _block_pairs(mem: duckdb.DuckDBPyConnection, rule: Rule) -> int:
    """Pairs of records the block puts together: Splink's `block_on` pairs two records whose
    values are equal and not null in every column."""
    columns = ", ".join(f'"{c}"' for c in rule)
    held = " and ".join(f'"{c}" is not null' for c in rule)
    return mem.execute(
        f"""
        select coalesce(sum(records * (records - 1) // 2), 0)
        from (select count(*) as records from match_input where {held} group by {columns})
        """
    ).fetchall()[0][0]


def _empty_columns(rule: Rule, filled: dict[str, int]) -> str | None:
    empty = [c for c in rule if not filled[c]]
    return f"no record holds a value for {', '.join(empty)}" if empty else None


def _prior_rules(mem, config: Probabilistic, filled) -> tuple[list[Rule], list[str]]:
    """The prior rules that find at least one pair, and a note for each one left out."""
    usable, notes = [], []
    for rule in config.prior_rules:
        why = _empty_columns(rule, filled)
        if why is None and not _block_pairs(mem, rule):
            why = "no two records share a value"
        if why is None:
            usable.append(rule)
        else:
            notes.append(f"prior rule {_name(rule)}: left out, {why}")
    return usable, notes


def _fallback_prior(config: Probabilistic, records: int, why: str) -> tuple[float, str]:
    pairs = records * (records - 1) / 2
    prior = min(1.0, config.fallback_matches_per_record * records / pairs)
    note = (
        f"prior: {why}; {config.fallback_matches_per_record} matching pairs per record assumed "
        f"(fallback_matches_per_record): {prior:.3g}"
    )
    return prior, note


def _prior(mem, db_api, config: Probabilistic, filled) -> tuple[float, list[str]]:
    """The probability that two random records match, as Splink's
    `estimate_probability_two_random_records_match` estimates it (the pairs the prior rules
    find, over `prior_recall`, over all pairs), checked first: when no prior rule finds a pair,
    or they find more than `prior_recall` allows, the fallback prior instead."""
    from splink import block_on
    from splink.blocking_analysis import count_comparisons_from_blocking_rules

    rules, notes = _prior_rules(mem, config, filled)
    if not rules:
        why = "no prior rule finds a pair" if config.prior_rules else "no prior_rules"
        prior, note = _fallback_prior(config, filled[""], why)
        return prior, [*notes, note]
    counts = count_comparisons_from_blocking_rules(
        db_api.register("match_input"),
        blocking_rules=[block_on(*rule) for rule in rules],
        link_type="dedupe_only",
        unique_id_column_name="record_id",
        record_sample_proportion=1.0,
    )[-1]
    found, pairs = counts["cumulative_comparison_count"], counts["total_possible_comparison_count"]
    if found > pairs * config.prior_recall:
        why = f"the prior rules find {found} of {pairs} pairs, more than prior_recall allows"
        prior, note = _fallback_prior(config, filled[""], why)
        return prior, [*notes, note]
    return found / config.prior_recall / pairs, notes


def _em_rules(mem, config: Probabilistic, filled, comparisons) -> tuple[list[Rule], list[str]]:
    """The EM blocks with at least `em_min_pairs` pairs and a comparison to estimate (one not
    on the block's columns), and a note for each one left out."""
    usable, notes = [], []
    for rule in config.em_blocking_rules:
        why = _empty_columns(rule, filled)
        if why is None and all(c.column in rule for c in comparisons):
            why = "every comparison left is on its columns"
        if why is None and (pairs := _block_pairs(mem, rule)) < config.em_min_pairs:
            why = f"{pairs} pair(s), fewer than em_min_pairs {config.em_min_pairs}"
        if why is None:
            usable.append(rule)
        else:
            notes.append(f"EM block {_name(rule)}: left out, {why}")
    return usable, notes


def _untrained_m(comparisons, em_rules) -> list[str]:
    """EM estimates no m for a comparison on a column of its block: a comparison on a column
    of every EM block that runs keeps Splink's default m."""
    return [
        f"comparison {c.column}: m not estimated (every EM block blocks on it), Splink's "
        "default m used"
        for c in comparisons
        if all(c.column in rule for rule in em_rules)
    ]


def plan_training(mem, db_api, config: Probabilistic, filled: dict[str, int]) -> TrainingPlan:
    """Check every comparison, prior rule and EM block against the records in `match_input`
    (see the module's docstring); `filled` is `filled_columns` of them."""
    if filled[""] < 2:
        return TrainingPlan(skipped="fewer than two records: no pair to estimate u on")
    comparisons, notes = usable_comparisons(config, filled)
    if not comparisons:
        return TrainingPlan(notes=tuple(notes), skipped="no compared column holds values")
    em_rules, em_notes = _em_rules(mem, config, filled, comparisons)
    notes += em_notes
    if not em_rules:
        return TrainingPlan(notes=tuple(notes), skipped="no EM block can be trained")
    prior, prior_notes = _prior(mem, db_api, config, filled)
    notes += prior_notes + _untrained_m(comparisons, em_rules)
    return TrainingPlan(comparisons, tuple(em_rules), prior, tuple(notes))
