"""The identity-resolution settings (config/identity.yml), read and checked before any run."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field, field_validator, model_validator

from crm360.configfile import ConfigError, Strict, load_model, validate

IDENTIFIER_TYPES = ("crm_id", "shop_id", "email", "phone")
MATCH_COLUMNS = ("name", "name_kana", "birth_date", "postal_code", "prefecture", "phone", "email")
COMPARISON_KINDS = ("exact", "jaro_winkler", "levenshtein")


class IdentityConfigError(ConfigError):
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
    fallback_matches_per_record: float = 0.1
    u_sample_pairs: int = 1_000_000
    em_blocking_rules: tuple[tuple[str, ...], ...] = ()
    em_min_pairs: int = 100
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
            self.fallback_matches_per_record,
            self.u_sample_pairs,
            self.em_blocking_rules,
            self.em_min_pairs,
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


def _known(kind: str, known: tuple[str, ...]):
    def check(value: str) -> str:
        if value not in known:
            raise ValueError(f"unknown {kind} {value!r}; known: {', '.join(known)}")
        return value

    return AfterValidator(check)


IdentifierType = Annotated[str, _known("identifier type", IDENTIFIER_TYPES)]
MatchColumn = Annotated[str, _known("column", MATCH_COLUMNS)]
# a rule: one column, or columns that must all be equal
Rule = MatchColumn | Annotated[list[MatchColumn], Field(min_length=1)]


class _ComparisonSpec(Strict):
    column: MatchColumn
    kind: Annotated[str, _known("comparison kind", COMPARISON_KINDS)] = "exact"
    thresholds: list[float] = []

    @model_validator(mode="after")
    def _thresholds(self) -> _ComparisonSpec:
        if self.kind != "exact" and not self.thresholds:
            raise ValueError(f"{self.column}: a {self.kind} comparison needs thresholds")
        return self


class _ProbabilisticSpec(Strict):
    enabled: bool = True
    threshold: float = Field(default=0.99, gt=0, lt=1)
    blocking_rules: list[Rule] = []
    comparisons: list[_ComparisonSpec] = []
    prior_rules: list[Rule] = []
    prior_recall: float = Field(default=0.8, gt=0, le=1)
    fallback_matches_per_record: float = Field(default=0.1, gt=0)
    u_sample_pairs: int = Field(default=1_000_000, gt=0)
    em_blocking_rules: list[Rule] = []
    em_min_pairs: int = Field(default=100, ge=1)
    seed: int = 42
    min_records: int = Field(default=1000, ge=0)
    retrain_after_days: int = Field(default=7, ge=0)
    retrain_after_growth: float = Field(default=0.1, ge=0)

    @model_validator(mode="after")
    def _complete(self) -> _ProbabilisticSpec:
        if self.enabled and (not self.comparisons or not self.blocking_rules):
            raise ValueError("probabilistic matching needs comparisons and blocking_rules")
        return self


class _BlockedSpec(Strict):
    values: list[str | int | float | bool] = []
    patterns: list[str] = []

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as err:
                raise ValueError(f"bad pattern {pattern!r}: {err}") from None
        return patterns


class _IdentitySpec(Strict):
    identifier_priority: list[IdentifierType] = list(IDENTIFIER_TYPES)
    max_per_cluster: dict[IdentifierType, Annotated[int, Field(ge=1)]] = {}
    blocked_values: dict[IdentifierType, _BlockedSpec | None] = {}
    max_contacts_per_value: dict[IdentifierType, Annotated[int, Field(ge=1)]] = {}
    confirm_with_name: list[IdentifierType] = []
    name_similarity: float = Field(default=0.9, ge=0, le=1)
    probabilistic: _ProbabilisticSpec | None = None

    @field_validator("identifier_priority")
    @classmethod
    def _every_type(cls, priority: list[str]) -> list[str]:
        missing = [t for t in IDENTIFIER_TYPES if t not in priority]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}: rank every identifier type")
        return priority


def _rules(rules: list) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple([rule] if isinstance(rule, str) else rule) for rule in rules)


def _probabilistic(spec: _ProbabilisticSpec | None) -> Probabilistic:
    if spec is None:
        return Probabilistic(enabled=False)
    return Probabilistic(
        enabled=spec.enabled,
        threshold=spec.threshold,
        blocking_rules=_rules(spec.blocking_rules),
        comparisons=tuple(
            Comparison(c.column, c.kind, tuple(c.thresholds)) for c in spec.comparisons
        ),
        prior_rules=_rules(spec.prior_rules),
        prior_recall=spec.prior_recall,
        fallback_matches_per_record=spec.fallback_matches_per_record,
        u_sample_pairs=spec.u_sample_pairs,
        em_blocking_rules=_rules(spec.em_blocking_rules),
        em_min_pairs=spec.em_min_pairs,
        seed=spec.seed,
        min_records=spec.min_records,
        retrain_after_days=spec.retrain_after_days,
        retrain_after_growth=spec.retrain_after_growth,
    )


def _config(spec: _IdentitySpec) -> IdentityConfig:
    blocked = {t: b or _BlockedSpec() for t, b in spec.blocked_values.items()}
    return IdentityConfig(
        identifier_priority=tuple(spec.identifier_priority),
        max_per_cluster=dict(spec.max_per_cluster),
        blocked_values={t: frozenset(str(v).lower() for v in b.values) for t, b in blocked.items()},
        blocked_patterns={t: tuple(re.compile(p) for p in b.patterns) for t, b in blocked.items()},
        max_contacts_per_value=dict(spec.max_contacts_per_value),
        confirm_with_name=tuple(spec.confirm_with_name),
        name_similarity=spec.name_similarity,
        probabilistic=_probabilistic(spec.probabilistic),
    )


def parse_config(raw: dict) -> IdentityConfig:
    """Settings given as a mapping (as config/identity.yml reads)."""
    return _config(validate(raw, None, _IdentitySpec, "identity config", IdentityConfigError))


def load_config(path: Path) -> IdentityConfig:
    """config/identity.yml, validated: IdentityConfigError names each problem and its line."""
    return _config(load_model(path, _IdentitySpec, "identity config", error=IdentityConfigError))
