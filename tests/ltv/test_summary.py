"""Transaction log -> frequency, recency, T, monetary value on small logs with known answers."""

from __future__ import annotations

import pandas as pd
import pytest

from crm360.ltv.summary import summarise_transactions


def log_of(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["customer_id", "ordered_at", "revenue"]).assign(
        ordered_at=lambda f: pd.to_datetime(f["ordered_at"])
    )


TRANSACTIONS = log_of([
    # a: first day 2026-01-01 (two orders, one purchase), repeats on 01-15 and 01-29
    ("a", "2026-01-01 09:00", 100.0),
    ("a", "2026-01-01 18:00", 50.0),
    ("a", "2026-01-15 10:00", 200.0),
    ("a", "2026-01-29 23:59", 400.0),
    # b: one purchase only
    ("b", "2026-01-22 12:00", 70.0),
    # c: after the calibration end: not a customer yet
    ("c", "2026-02-02 08:00", 10.0),
    # a again, in the holdout
    ("a", "2026-02-05 08:00", 30.0),
    ("a", "2026-02-05 09:00", 30.0),
])  # fmt: skip


def test_weekly_summary_of_known_customers():
    summary = summarise_transactions(TRANSACTIONS, "2026-01-29", 7, monetary_col="revenue")
    assert list(summary.index) == ["a", "b"]
    a, b = summary.loc["a"], summary.loc["b"]
    assert a["frequency"] == 2  # two repeat purchase days; the two orders of day one are one
    assert a["recency"] == pytest.approx(4.0)  # 28 days
    assert a["T"] == pytest.approx(4.0)  # the last order is on the calibration end day
    assert a["monetary_value"] == pytest.approx(300.0)  # (200 + 400) / 2, first day excluded
    assert (b["frequency"], b["recency"], b["monetary_value"]) == (0, 0, 0)
    assert b["T"] == pytest.approx(1.0)


def test_time_unit_is_a_parameter():
    days = summarise_transactions(TRANSACTIONS, "2026-01-29", 1)
    weeks = summarise_transactions(TRANSACTIONS, "2026-01-29", 7)
    assert days.loc["a", "recency"] == 28
    assert days.loc["a", "T"] == 28
    assert weeks.loc["a", "T"] == pytest.approx(days.loc["a", "T"] / 7)
    assert "monetary_value" not in days


def test_calibration_end_is_inclusive_and_cuts_later_orders():
    summary = summarise_transactions(TRANSACTIONS, "2026-01-28", 1, monetary_col="revenue")
    assert summary.loc["a", "frequency"] == 1
    assert summary.loc["a", "monetary_value"] == 200
    assert summary.loc["a", "T"] == 27


def test_holdout_columns():
    summary = summarise_transactions(
        TRANSACTIONS, "2026-01-29", 7, monetary_col="revenue", observation_end="2026-02-12"
    )
    assert "c" not in summary.index  # first bought in the holdout: not in the calibration
    assert summary.loc["a", "frequency_holdout"] == 1  # one purchase day
    assert summary.loc["a", "monetary_value_holdout"] == 60
    assert summary.loc["b", "frequency_holdout"] == 0
    assert summary["duration_holdout"].eq(2.0).all()
    with pytest.raises(ValueError, match="after the calibration end"):
        summarise_transactions(TRANSACTIONS, "2026-01-29", 7, observation_end="2026-01-29")


def test_time_zone_aware_timestamps_count_utc_days():
    # 2026-01-01 23:30 UTC is 2026-01-02 in Tokyo: days are UTC days
    aware = log_of([("a", "2026-01-01 23:30", 1.0), ("a", "2026-01-02 00:30", 1.0)])
    aware["ordered_at"] = aware["ordered_at"].dt.tz_localize("UTC")
    summary = summarise_transactions(aware, "2026-01-10", 1)
    assert summary.loc["a", "frequency"] == 1
    jst = aware.assign(ordered_at=aware["ordered_at"].dt.tz_convert("Asia/Tokyo"))
    pd.testing.assert_frame_equal(summarise_transactions(jst, "2026-01-10", 1), summary)


def test_bad_inputs_are_named():
    with pytest.raises(KeyError, match="revenue"):
        summarise_transactions(TRANSACTIONS.drop(columns="revenue"), "2026-01-29", 7,
                               monetary_col="revenue")  # fmt: skip
    with pytest.raises(ValueError, match="time_unit_days"):
        summarise_transactions(TRANSACTIONS, "2026-01-29", 0)
