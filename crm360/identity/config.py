"""The identity-resolution settings (config/identity.yml), read and checked before any run."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

IDENTIFIER_TYPES = ("crm_id", "shop_id", "email", "phone")
MATCH_COLUMNS = ("name", "name_kana", "birth_date", "postal_code", "prefecture", "phone", "email")
COMPARISON_KINDS = ("exact", "jaro_winkler", "levenshtein")


class IdentityConfigError(ValueError):
    """config/identity.yml is missing something or holds a value that cannot work."""


def _fingerprint(fields: tuple) -> str:
    """A short stable key of settings, to tell whether something kept was made under them."""
    import hashlib

    return hashlib.sha256(repr(fields).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Comparison:
    column: str
    kind: str
    thresholds: tuple[float, ...] = ()


@dataclass(frozen=True)
class Probabilistic:
    enabled: bool = True
    threshold: float = 0.99
    blocking_rules: tuple[tuple[str, ...], ...] = ()
    comparisons: tuple[Comparison, ...] = ()
    prior_rules: tuple[tuple[str, ...], ...] = ()
    prior_recall: float = 0.8
    u_sample_pairs: int = 1_000_000
    em_blocking_rules: tuple[tuple[str, ...], ...] = ()
    seed: int = 42
    min_records: int = 1000
    retrain_after_days: int = 7
    retrain_after_growth: float = 0.1

    def model_key(self) -> str:
        """What the trained model depends on: a model trained under other comparisons,
        blocks or training settings is never reused."""
        fields = (
            self.threshold,
            self.blocking_rules,
            self.comparisons,
            self.prior_rules,
            self.prior_recall,
            self.u_sample_pairs,
            self.em_blocking_rules,
            self.seed,
        )
        return _fingerprint(fields)


@dataclass(frozen=True)
class IdentityConfig:
    identifier_priority: tuple[str, ...]
    max_per_cluster: dict[str, int]
    blocked_values: dict[str, frozenset[str]]
    blocked_patterns: dict[str, tuple[re.Pattern, ...]]
    max_contacts_per_value: dict[str, int]
    confirm_with_name: tuple[str, ...] = ()
    name_similarity: float = 0.9
    probabilistic: Probabilistic = field(default_factory=Probabilistic)

    def blocking_rules_key(self) -> str:
        """What blocked_reason depends on: a value checked under other rules is checked again."""
        fields = (
            sorted((t, sorted(v)) for t, v in self.blocked_values.items()),
            sorted(
                (t, [(p.pattern, p.flags) for p in ps]) for t, ps in self.blocked_patterns.items()
            ),
        )
        return _fingerprint(fields)

    def blocked_reason(self, id_type: str, value: str) -> str | None:
        """Why a value never links anyone, or None when it may."""
        if value in self.blocked_values.get(id_type, ()):
            return f"blocked value {value!r}"
        for pattern in self.blocked_patterns.get(id_type, ()):
            if pattern.search(value):
                return f"blocked pattern {pattern.pattern!r}"
        return None


def _rules(raw, where: str) -> tuple[tuple[str, ...], ...]:
    rules = []
    for rule in raw or []:
        columns = tuple([rule] if isinstance(rule, str) else rule)
        unknown = [c for c in columns if c not in MATCH_COLUMNS]
        if not columns or unknown:
            raise IdentityConfigError(f"{where}: unknown column(s) {unknown or rule!r}")
        rules.append(columns)
    return tuple(rules)


def _probabilistic(raw: dict) -> Probabilistic:
    comparisons = []
    for item in raw.get("comparisons", []):
        column, kind = item.get("column"), item.get("kind", "exact")
        if column not in MATCH_COLUMNS:
            raise IdentityConfigError(f"probabilistic.comparisons: unknown column {column!r}")
        if kind not in COMPARISON_KINDS:
            raise IdentityConfigError(
                f"probabilistic.comparisons: {column}: kind {kind!r} is not one of "
                f"{', '.join(COMPARISON_KINDS)}"
            )
        thresholds = tuple(item.get("thresholds", ()))
        if kind != "exact" and not thresholds:
            raise IdentityConfigError(f"probabilistic.comparisons: {column}: needs thresholds")
        comparisons.append(Comparison(column, kind, thresholds))
    threshold = float(raw.get("threshold", 0.99))
    if not 0 < threshold < 1:
        raise IdentityConfigError(f"probabilistic.threshold must be in (0, 1), got {threshold}")
    enabled = bool(raw.get("enabled", True))
    retrain_days = int(raw.get("retrain_after_days", 7))
    growth = float(raw.get("retrain_after_growth", 0.1))
    if retrain_days < 0 or growth < 0:
        raise IdentityConfigError(
            "probabilistic: retrain_after_days and retrain_after_growth must not be negative"
        )
    blocking = _rules(raw.get("blocking_rules"), "probabilistic.blocking_rules")
    if enabled and (not comparisons or not blocking):
        raise IdentityConfigError("probabilistic: needs comparisons and blocking_rules")
    return Probabilistic(
        enabled=enabled,
        threshold=threshold,
        blocking_rules=blocking,
        comparisons=tuple(comparisons),
        prior_rules=_rules(raw.get("prior_rules"), "probabilistic.prior_rules"),
        prior_recall=float(raw.get("prior_recall", 0.8)),
        u_sample_pairs=int(raw.get("u_sample_pairs", 1_000_000)),
        em_blocking_rules=_rules(raw.get("em_blocking_rules"), "probabilistic.em_blocking_rules"),
        seed=int(raw.get("seed", 42)),
        min_records=int(raw.get("min_records", 1000)),
        retrain_after_days=retrain_days,
        retrain_after_growth=growth,
    )


def _check_types(names, where: str) -> None:
    unknown = [n for n in names if n not in IDENTIFIER_TYPES]
    if unknown:
        raise IdentityConfigError(
            f"{where}: unknown identifier type(s) {unknown}; known: {', '.join(IDENTIFIER_TYPES)}"
        )


def parse_config(raw: dict) -> IdentityConfig:
    priority = tuple(raw.get("identifier_priority") or IDENTIFIER_TYPES)
    _check_types(priority, "identifier_priority")
    missing = [t for t in IDENTIFIER_TYPES if t not in priority]
    if missing:
        raise IdentityConfigError(f"identifier_priority: missing {missing}")
    limits = {k: int(v) for k, v in (raw.get("max_per_cluster") or {}).items()}
    _check_types(limits, "max_per_cluster")
    if any(v < 1 for v in limits.values()):
        raise IdentityConfigError("max_per_cluster: every limit must be at least 1")
    blocked = raw.get("blocked_values") or {}
    _check_types(blocked, "blocked_values")
    shared = {k: int(v) for k, v in (raw.get("max_contacts_per_value") or {}).items()}
    _check_types(shared, "max_contacts_per_value")
    confirm = raw.get("confirm_with_name") or []
    _check_types(confirm, "confirm_with_name")
    try:
        patterns = {
            t: tuple(re.compile(p) for p in (spec or {}).get("patterns", []))
            for t, spec in blocked.items()
        }
    except re.error as err:
        raise IdentityConfigError(f"blocked_values: bad pattern: {err}") from err
    return IdentityConfig(
        identifier_priority=priority,
        max_per_cluster=limits,
        blocked_values={
            t: frozenset(str(v).lower() for v in (spec or {}).get("values", []))
            for t, spec in blocked.items()
        },
        blocked_patterns=patterns,
        max_contacts_per_value=shared,
        confirm_with_name=tuple(confirm),
        name_similarity=float(raw.get("name_similarity", 0.9)),
        probabilistic=_probabilistic(raw.get("probabilistic") or {"enabled": False}),
    )


def load_config(path: Path) -> IdentityConfig:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as err:
        raise IdentityConfigError(f"{path}: not found") from err
    try:
        return parse_config(raw)
    except IdentityConfigError as err:
        raise IdentityConfigError(f"{path}: {err}") from err
