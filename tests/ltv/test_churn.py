"""Subscription churn model: the time split leaks nothing, features only see the past, the
kept model scores like scikit-learn, bands at their boundaries."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from crm360.ltv import churn

AS_OF = date(2026, 11, 1)
T = pd.Timestamp


def sources(subscriptions, orders=(), web=(), email=(), tickets=()) -> churn.ChurnSources:
    return churn.ChurnSources(
        subscriptions=pd.DataFrame(
            subscriptions,
            columns=["subscription_id", "customer_id", "started_at", "cancelled_at",
                     "subscription_status", "monthly_price"],
        ),
        orders=pd.DataFrame(list(orders), columns=["customer_id", "ordered_at"]),
        web_events=pd.DataFrame(list(web), columns=["customer_id", "anonymous_id", "occurred_at"]),
        email_events=pd.DataFrame(
            list(email), columns=["customer_id", "campaign_id", "event_type", "occurred_at"]
        ),
        tickets=pd.DataFrame(
            list(tickets), columns=["customer_id", "created_at", "resolved_at", "csat_score"]
        ),
    )  # fmt: skip


def test_time_split_puts_every_training_label_before_the_holdout():
    split = churn.time_split(AS_OF, 90, 4)
    assert split.holdout == AS_OF - timedelta(days=90)
    assert split.train == tuple(AS_OF - timedelta(days=90 * k) for k in (5, 4, 3, 2))
    assert all(split.label_end(cutoff) <= split.holdout for cutoff in split.train)
    assert split.label_end(split.holdout) == AS_OF
    with pytest.raises(ValueError):
        churn.time_split(AS_OF, 0, 4)


def test_snapshot_population_and_label():
    cutoff = date(2026, 5, 1)
    subs = sources([
        (1, "c1", T("2026-01-01"), None, "active", 2980),            # running, kept
        (2, "c2", T("2026-01-01"), T("2026-06-15"), "cancelled", 3980),  # cancels in window
        (3, "c3", T("2026-01-01"), T("2026-04-30"), "cancelled", 3980),  # gone before cutoff
        (4, "c4", T("2026-05-01"), None, "active", 2980),            # starts on the cutoff
        (5, "c5", T("2026-01-01"), T("2026-07-30"), "cancelled", 1980),  # the day the window ends
        (6, "c6", T("2026-01-01"), None, "paused", 1980),            # paused today
    ])  # fmt: skip
    frame = churn.snapshot(subs, cutoff, 90).set_index("subscription_id")
    assert sorted(frame.index) == [1, 2, 5, 6]
    assert frame["is_cancelled"].to_dict() == {1: False, 2: True, 5: False, 6: False}
    assert frame.loc[1, "tenure_days"] == 120
    scoring = churn.snapshot(subs, date(2026, 8, 1), None)
    assert sorted(scoring["subscription_id"]) == [1, 4]  # not paused 6, not cancelled 2 and 5
    assert "is_cancelled" not in scoring


def test_features_only_see_events_before_the_cutoff():
    cutoff = date(2026, 5, 1)
    past = dict(
        orders=[("c1", T("2026-04-01")), ("c1", T("2026-01-15"))],
        web=[("c1", "a-1", T("2026-04-20 10:00")), ("c1", "a-1", T("2026-04-20 10:10")),
             ("c1", "a-1", T("2026-04-20 11:00"))],
        email=[("c1", "CMP1", "open", T("2026-04-10")), ("c1", "CMP1", "open", T("2026-04-11")),
               ("c1", "CMP1", "click", T("2026-04-11"))],
        tickets=[("c1", T("2026-03-01"), T("2026-03-02"), 1),
                 ("c1", T("2026-04-28"), T("2026-05-03"), 5)],  # resolved after the cutoff
    )  # fmt: skip
    future = dict(
        orders=[("c1", T("2026-05-01")), ("c1", T("2026-06-01"))],
        web=[("c1", "a-1", T("2026-05-01 00:00")), ("c1", "a-2", T("2026-05-02"))],
        email=[("c1", "CMP2", "open", T("2026-05-01")), ("c1", "CMP2", "click", T("2026-05-05"))],
        tickets=[("c1", T("2026-05-01"), T("2026-05-01 01:00"), 1)],
    )  # fmt: skip
    subscription = [(1, "c1", T("2026-01-01"), T("2026-06-01"), "cancelled", 2980)]
    before = churn.snapshot(sources(subscription, **past), cutoff, 90)
    both = {key: past[key] + future[key] for key in past}
    after = churn.snapshot(sources(subscription, **both), cutoff, 90)
    pd.testing.assert_frame_equal(before, after)
    row = before.iloc[0]
    assert row["order_count_90d"] == 1
    assert row["days_since_last_order"] == 30
    assert row["web_session_count_30d"] == 2  # a gap of 50 minutes starts a second session
    assert row["email_open_count_90d"] == 1  # unique campaigns
    assert row["email_click_count_90d"] == 1
    assert row["support_ticket_count_180d"] == 2
    assert row["low_csat_ticket_count"] == 1
    assert row["avg_csat_score"] == 1  # the 5 is not known before the ticket is resolved
    assert bool(row["is_cancelled"])


def test_a_customer_without_events_gets_zeros_and_no_csat():
    frame = churn.snapshot(sources([(1, "c9", T("2026-01-01"), None, "active", 1980)]),
                           date(2026, 5, 1), 90)  # fmt: skip
    row = frame.iloc[0]
    assert row["order_count_90d"] == 0 and row["web_session_count_30d"] == 0
    assert row["days_since_last_order"] == churn.NO_ORDER_DAYS
    assert np.isnan(row["avg_csat_score"])


def training_frame(n: int = 400, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({name: rng.normal(size=n) for name in churn.FEATURES})
    frame["avg_csat_score"] = np.where(rng.random(n) < 0.3, np.nan, rng.integers(1, 6, n))
    logit = -1 + 1.5 * frame["monthly_price"] - 1.0 * frame["log_tenure_days"]
    frame["is_cancelled"] = rng.random(n) < 1 / (1 + np.exp(-logit))
    return frame


def test_kept_model_scores_like_scikit_learn():
    train = training_frame()
    model = churn.fit_churn_model(train)
    again = churn.ChurnModel.from_json(model.to_json())
    filled = train[list(churn.FEATURES)].fillna(model.fill_values)
    standard = (filled - pd.Series(model.means)) / pd.Series(model.scales)
    reference = LogisticRegression(C=1.0, max_iter=1000).fit(
        standard.to_numpy(), train["is_cancelled"].astype(int)
    )
    expected = reference.predict_proba(standard.to_numpy())[:, 1]
    assert again.predict(train) == pytest.approx(expected, abs=1e-6)
    assert model.coefficients["monthly_price"] > 0 > model.coefficients["log_tenure_days"]


def test_evaluation_on_a_holdout():
    model = churn.fit_churn_model(training_frame(seed=3))
    result = churn.evaluate(model, training_frame(seed=4), bins=5)
    assert 0.6 < result["auc"] < 1
    assert result["row_count"] == 400
    assert sum(b["row_count"] for b in result["calibration"]) == 400
    assert [b["bin"] for b in result["calibration"]] == [1, 2, 3, 4, 5]
    means = [b["mean_predicted"] for b in result["calibration"]]
    assert means == sorted(means)
    one_class = training_frame(seed=4).assign(is_cancelled=False)
    assert churn.evaluate(model, one_class)["auc"] is None
    with pytest.raises(ValueError, match="both cancelled and kept"):
        churn.fit_churn_model(one_class)


@pytest.mark.parametrize(
    ("probability", "band"),
    [(0.0, "low"), (0.2999, "low"), (0.3, "medium"), (0.5999, "medium"), (0.6, "high"),
     (1.0, "high"), (None, None), (float("nan"), None)],
)  # fmt: skip
def test_churn_bands_at_their_boundaries(probability, band):
    assert churn.churn_band(probability, low=0.3, medium=0.6) == band
    # the mart bands a whole column at once, with the same boundaries
    assert churn.churn_bands([probability, 0.45], low=0.3, medium=0.6).tolist() == [band, "medium"]
