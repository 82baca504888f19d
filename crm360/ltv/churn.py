"""Subscription cancellation model: features before a cutoff, a time-split validation, scoring.

A snapshot at a cutoff date holds every subscription running then (started before the cutoff,
not cancelled before it) with features measured strictly before the cutoff and, when the label
window has passed, whether it was cancelled within `label_days` days from the cutoff.

The validation is a split in time, never across customers of one period:

    ... train cutoffs (as_of - k·N, k ≥ 2) | holdout cutoff (as_of - N) | score cutoff (as_of)

Every training label window ends on or before the holdout cutoff, so nothing the holdout is
judged on (cancellations from the holdout cutoff on) is seen in training; the model is then
applied, unchanged, to the subscriptions running on as_of. A model is kept as plain numbers
(`ChurnModel.to_json`) so that scoring needs neither the training data nor scikit-learn.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

FEATURES = (
    "log_tenure_days",
    "monthly_price",
    "order_count_90d",
    "days_since_last_order",
    "web_session_count_30d",
    "email_open_count_90d",
    "email_click_count_90d",
    "support_ticket_count_180d",
    "low_csat_ticket_count",
    "avg_csat_score",
)
# a customer without an order before the cutoff counts as this many days since the last one
NO_ORDER_DAYS = 730
WEB_SESSION_GAP = timedelta(minutes=30)


@dataclass(frozen=True)
class ChurnSplit:
    train: tuple[date, ...]
    holdout: date
    score: date
    label_days: int

    def label_end(self, cutoff: date) -> date:
        return cutoff + timedelta(days=self.label_days)


def time_split(as_of: date, label_days: int, train_snapshots: int) -> ChurnSplit:
    """Cutoffs of the validation: holdout N days before as_of, training 2N, 3N... before."""
    if label_days <= 0 or train_snapshots <= 0:
        raise ValueError("label_days and train_snapshots must be positive")
    step = timedelta(days=label_days)
    train = tuple(as_of - k * step for k in range(train_snapshots + 1, 1, -1))
    split = ChurnSplit(train=train, holdout=as_of - step, score=as_of, label_days=label_days)
    assert all(split.label_end(cutoff) <= split.holdout for cutoff in split.train)
    return split


@dataclass(frozen=True)
class ChurnSources:
    """The event logs the features come from, each with `customer_id` and UTC timestamps:
    subscriptions (subscription_id, started_at, cancelled_at, subscription_status,
    monthly_price), completed orders (ordered_at), web events (anonymous_id, occurred_at),
    e-mail events (campaign_id, event_type, occurred_at), tickets (created_at, resolved_at,
    csat_score). The web events may be the whole log or only its session starts: both give the
    same sessions. `web_sessions` (customer_id, started_at), when given, are the session starts
    of `web_events` already found (as web_session_starts finds them); else they are found here."""

    subscriptions: pd.DataFrame
    orders: pd.DataFrame
    web_events: pd.DataFrame
    email_events: pd.DataFrame
    tickets: pd.DataFrame
    # session starts of web_events, found once for every snapshot
    web_sessions: pd.DataFrame | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # time columns as naive datetimes, even when empty or all null
        for name, columns in _TIME_COLUMNS.items():
            frame = getattr(self, name)
            if frame is None:
                continue
            frame = frame.copy()
            for column in columns:
                frame[column] = _naive_times(frame[column])
            object.__setattr__(self, name, frame)
        if self.web_sessions is None:
            object.__setattr__(self, "web_sessions", web_session_starts(self.web_events))


_TIME_COLUMNS = {
    "subscriptions": ("started_at", "cancelled_at"),
    "orders": ("ordered_at",),
    "web_events": ("occurred_at",),
    "email_events": ("occurred_at",),
    "tickets": ("created_at", "resolved_at"),
    "web_sessions": ("started_at",),
}


def _naive_times(values: pd.Series) -> pd.Series:
    import pandas as pd

    times = pd.to_datetime(values)
    if times.dt.tz is not None:
        times = times.dt.tz_convert("UTC").dt.tz_localize(None)
    return times.astype("datetime64[us]")


def web_session_starts(web_events: pd.DataFrame) -> pd.DataFrame:
    """One row per web session (customer_id, started_at): a device's event more than 30
    minutes after its previous one starts a session. A start depends only on earlier events."""
    events = web_events.sort_values(["anonymous_id", "occurred_at"])
    gap = events.groupby("anonymous_id")["occurred_at"].diff()
    starts = events[gap.isna() | (gap > WEB_SESSION_GAP)]
    return starts[["customer_id", "occurred_at"]].rename(columns={"occurred_at": "started_at"})


def snapshot(sources: ChurnSources, cutoff: date, label_days: int | None) -> pd.DataFrame:
    """Subscriptions running at `cutoff` with their features (events strictly before the
    cutoff) and, when `label_days` is given, `is_cancelled` within the label window. A
    subscription paused today is counted as running at a past cutoff (no pause history)."""
    import pandas as pd

    at = pd.Timestamp(cutoff)
    subs = sources.subscriptions
    running = subs[
        (subs["started_at"] < at) & ~(subs["cancelled_at"] < at)  # NaT compares False
    ]
    if label_days is None:  # scoring: the contract is active today (not paused)
        running = running[running["subscription_status"] != "paused"]
    # a fixed row order: the fit and its floating-point sums must not depend on scan order
    running = running.sort_values("subscription_id", kind="stable")
    frame = running[["subscription_id", "customer_id", "monthly_price"]].copy()
    frame["snapshot_date"] = cutoff
    frame["tenure_days"] = (at - running["started_at"]).dt.days.astype(float)
    # the hazard of cancelling falls steeply over the first months, then flattens
    frame["log_tenure_days"] = np.log1p(frame["tenure_days"])
    frame["monthly_price"] = frame["monthly_price"].astype(float)
    if label_days is not None:
        label_end = at + pd.Timedelta(days=label_days)
        frame["is_cancelled"] = (running["cancelled_at"] >= at) & (
            running["cancelled_at"] < label_end
        )
    return _add_counts(frame.reset_index(drop=True), sources, at)


def _window_count(
    events: pd.DataFrame, column: str, at, days: int, name: str, distinct: str | None = None
):
    import pandas as pd

    window = events[(events[column] < at) & (events[column] >= at - pd.Timedelta(days=days))]
    grouped = window.groupby("customer_id")
    counts = grouped[distinct].nunique() if distinct else grouped.size()
    return counts.rename(name)


def _add_counts(frame: pd.DataFrame, sources: ChurnSources, at) -> pd.DataFrame:
    orders, tickets, email = sources.orders, sources.tickets, sources.email_events
    sessions = sources.web_sessions
    before = orders[orders["ordered_at"] < at]
    last_order = before.groupby("customer_id")["ordered_at"].max()
    resolved = tickets[tickets["resolved_at"] < at]  # a CSAT is known once the ticket is resolved
    per_customer = [
        _window_count(orders, "ordered_at", at, 90, "order_count_90d"),
        _window_count(sessions, "started_at", at, 30, "web_session_count_30d"),
        _window_count(
            email[email["event_type"] == "open"],
            "occurred_at", at, 90, "email_open_count_90d", distinct="campaign_id",
        ),
        _window_count(
            email[email["event_type"] == "click"],
            "occurred_at", at, 90, "email_click_count_90d", distinct="campaign_id",
        ),
        _window_count(tickets, "created_at", at, 180, "support_ticket_count_180d"),
        resolved[resolved["csat_score"] <= 2].groupby("customer_id").size().rename(
            "low_csat_ticket_count"
        ),
    ]  # fmt: skip
    out = frame.set_index("customer_id", drop=False)
    for series in per_customer:
        out[series.name] = series.reindex(out.index).fillna(0).astype(float).to_numpy()
    days_since = (at - last_order).dt.days.reindex(out.index)
    out["days_since_last_order"] = days_since.fillna(NO_ORDER_DAYS).clip(upper=NO_ORDER_DAYS)
    # a float column even when no ticket was resolved (an empty log has no numeric dtype)
    out["avg_csat_score"] = (
        resolved.groupby("customer_id")["csat_score"].mean().reindex(out.index)
    ).to_numpy(dtype=float)
    return out.reset_index(drop=True)


def build_snapshots(sources: ChurnSources, split: ChurnSplit) -> pd.DataFrame:
    """Training, holdout and scoring snapshots, stacked, with a `snapshot_role` column."""
    import pandas as pd

    parts = [
        snapshot(sources, cutoff, split.label_days).assign(snapshot_role="train")
        for cutoff in split.train
    ]
    parts.append(snapshot(sources, split.holdout, split.label_days).assign(snapshot_role="holdout"))
    parts.append(snapshot(sources, split.score, None).assign(snapshot_role="score"))
    return pd.concat(parts, ignore_index=True)


@dataclass(frozen=True)
class ChurnModel:
    """A logistic regression on standardised features: p = σ(b0 + Σ bj·(xj − μj)/σj), missing
    values filled with the training median."""

    intercept: float
    coefficients: dict[str, float]
    means: dict[str, float]
    scales: dict[str, float]
    fill_values: dict[str, float]

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ChurnModel:
        return cls(**json.loads(text))

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        logit = np.full(len(frame), self.intercept)
        for name, coefficient in self.coefficients.items():
            values = frame[name].astype(float).fillna(self.fill_values[name]).to_numpy()
            logit += coefficient * (values - self.means[name]) / self.scales[name]
        return 1.0 / (1.0 + np.exp(-logit))


class NotEnoughTrainingData(ValueError):
    """The training snapshots lack cancelled or kept subscriptions (a small or new shop)."""


def fit_churn_model(train: pd.DataFrame, features: tuple[str, ...] = FEATURES) -> ChurnModel:
    """Fit an L2 logistic regression (scikit-learn, lbfgs) on labelled training snapshots."""
    from sklearn.linear_model import LogisticRegression

    labels = train["is_cancelled"].astype(int).to_numpy()
    if len(np.unique(labels)) < 2:
        raise NotEnoughTrainingData(
            f"training snapshots need both cancelled and kept subscriptions; "
            f"got {len(labels)} rows, {labels.sum()} cancelled"
        )
    fill = {name: _finite_or(train[name].astype(float).median(), 0.0) for name in features}
    matrix = train[list(features)].astype(float).fillna(fill)
    means = matrix.mean()
    scales = matrix.std(ddof=0).replace(0.0, 1.0)
    standard = ((matrix - means) / scales).to_numpy()
    regression = LogisticRegression(C=1.0, max_iter=1000).fit(standard, labels)
    return ChurnModel(
        intercept=float(regression.intercept_[0]),
        coefficients={n: float(c) for n, c in zip(features, regression.coef_[0], strict=True)},
        means={n: float(means[n]) for n in features},
        scales={n: float(scales[n]) for n in features},
        fill_values=fill,
    )


def _finite_or(value: float, default: float) -> float:
    return float(value) if value is not None and math.isfinite(value) else default


def evaluate(model: ChurnModel | None, holdout: pd.DataFrame, bins: int = 5) -> dict:
    """Holdout AUC (None when one class is missing), Brier score, size, base rate and
    calibration: the holdout cut into `bins` equal-count bins of predicted probability, each
    with its mean prediction and observed cancellation rate. Without a model: sizes only."""
    from sklearn.metrics import brier_score_loss, roc_auc_score

    labels = holdout["is_cancelled"].astype(int).to_numpy()
    scored = model is not None and len(labels) > 0
    predicted = model.predict(holdout) if scored else np.zeros(0)
    both = scored and 0 < labels.sum() < len(labels)
    return {
        "auc": float(roc_auc_score(labels, predicted)) if both else None,
        "brier_score": float(brier_score_loss(labels, predicted)) if scored else None,
        "row_count": int(len(labels)),
        "cancelled_count": int(labels.sum()),
        "base_rate": float(labels.mean()) if len(labels) else None,
        "calibration": calibration_bins(predicted, labels, bins) if scored else [],
    }


def calibration_bins(predicted: np.ndarray, labels: np.ndarray, bins: int) -> list[dict]:
    """Equal-count bins by predicted probability (ties kept together by a stable sort)."""
    order = np.argsort(predicted, kind="stable")
    rows = []
    for number, part in enumerate(np.array_split(order, bins), start=1):
        if len(part) == 0:
            continue
        rows.append({
            "bin": number,
            "row_count": int(len(part)),
            "min_predicted": float(predicted[part].min()),
            "max_predicted": float(predicted[part].max()),
            "mean_predicted": float(predicted[part].mean()),
            "observed_rate": float(labels[part].mean()),
        })  # fmt: skip
    return rows


def churn_bands(probabilities, low: float, medium: float) -> np.ndarray:
    """The band of every probability at once, as an object array: 'low' below `low`, 'medium'
    below `medium`, else 'high'; None without a probability (None or NaN)."""
    p = np.asarray(probabilities, dtype=float)
    bands = np.select([p < low, p < medium, p >= medium], ["low", "medium", "high"], "")
    return np.where(np.isnan(p), None, bands).astype(object)


def churn_band(probability: float | None, low: float, medium: float) -> str | None:
    """'low' below `low`, 'medium' below `medium`, else 'high'; None without a probability."""
    return churn_bands([probability], low, medium)[0]
