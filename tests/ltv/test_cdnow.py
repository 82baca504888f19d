"""The BG/NBD and Gamma-Gamma fits reproduce the published CDNOW estimates, starting from the raw
transaction log lifetimes ships (2,357 customers of the CDNOW sample, first purchases in the
first quarter of 1997, calibration to 1997-09-30, weeks).

Published: BG/NBD r = 0.243, alpha = 4.414, a = 0.793, b = 2.426, LL = -9582.4 (Fader, Hardie &
Lee 2005, "Counting your customers the easy way"); Gamma-Gamma p = 6.25, q = 3.74, v = 15.44
(Fader, Hardie & Lee 2005, "RFM and CLV", the same 946 repeat buyers).
"""

from __future__ import annotations

import logging
import time
from importlib.resources import files

import pandas as pd
import pytest
from lifetimes.utils import summary_data_from_transaction_data

from crm360.ltv import models
from crm360.ltv.summary import summarise_transactions

CALIBRATION_END = "1997-09-30"
WEEK = 7

log = logging.getLogger(__name__)


@pytest.fixture(scope="module")
def transactions() -> pd.DataFrame:
    """CDNOW_sample.txt: customer id, id in the master file, date (YYYYMMDD), CDs, dollars."""
    path = files("lifetimes") / "datasets" / "CDNOW_sample.txt"
    frame = pd.read_csv(
        path,
        sep=r"\s+",
        header=None,
        names=["customer_id", "master_id", "purchased_on", "quantity", "spend"],
        dtype={"purchased_on": str},
    )
    frame["purchased_on"] = pd.to_datetime(frame["purchased_on"], format="%Y%m%d")
    return frame


@pytest.fixture(scope="module")
def summary(transactions) -> pd.DataFrame:
    return summarise_transactions(
        transactions,
        CALIBRATION_END,
        WEEK,
        datetime_col="purchased_on",
        monetary_col="spend",
    )


def test_summary_covers_the_sample(transactions, summary):
    assert transactions["customer_id"].nunique() == 2357
    assert len(summary) == 2357
    # everyone's first purchase is in Q1 1997: T between 26 and 39 weeks
    assert summary["T"].between(26, 39).all()
    assert (summary["recency"] <= summary["T"]).all()


def test_summary_equals_lifetimes_own(transactions, summary):
    theirs = summary_data_from_transaction_data(
        transactions,
        "customer_id",
        "purchased_on",
        monetary_value_col="spend",
        observation_period_end=CALIBRATION_END,
        freq="D",
        freq_multiplier=WEEK,
    )
    pd.testing.assert_frame_equal(
        summary[["frequency", "recency", "T", "monetary_value"]],
        theirs,
        check_names=False,
        check_exact=False,
        rtol=1e-12,
    )


def test_bg_nbd_reproduces_the_published_fit(summary):
    started = time.perf_counter()
    _, fit = models.fit_bg_nbd(summary, penalizer_coef=0.0)
    seconds = time.perf_counter() - started
    log.info("CDNOW BG/NBD fit: %.3f s", seconds)
    published = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    for name, value in published.items():
        assert fit.params[name] == pytest.approx(value, abs=1e-3), name
    assert fit.log_likelihood == pytest.approx(-9582.4, abs=0.1)
    assert fit.customer_count == 2357
    assert fit.converged
    assert 0 < fit.fit_seconds < 30


def test_gamma_gamma_reproduces_the_published_fit(summary):
    _, fit = models.fit_gamma_gamma(summary, penalizer_coef=0.0)
    assert fit.customer_count == 946
    for name, value in {"p": 6.25, "q": 3.74, "v": 15.44}.items():
        assert fit.params[name] == pytest.approx(value, rel=1e-2), name
    # CDNOW: spend barely depends on the number of purchases (the model's assumption)
    assert fit.spend_frequency_correlation == pytest.approx(0.11, abs=0.01)


def test_discounted_clv_matches_lifetimes_for_weeks(summary):
    bg_nbd, _ = models.fit_bg_nbd(summary)
    gamma_gamma, _ = models.fit_gamma_gamma(summary)
    ours = models.predict_customer_value(
        summary,
        bg_nbd,
        gamma_gamma,
        time_unit_days=WEEK,
        horizon_months=12,
        annual_discount_rate=1.01**12 - 1,  # lifetimes takes the monthly rate: 1%
    )
    theirs = gamma_gamma.customer_lifetime_value(
        bg_nbd,
        summary["frequency"],
        summary["recency"],
        summary["T"],
        summary["monetary_value"],
        time=12,
        discount_rate=0.01,
        freq="W",
    )
    # lifetimes counts 4.345 weeks a month, we 365.25 / 12 / 7 = 4.348
    assert ours["clv"].to_numpy() == pytest.approx(theirs.to_numpy(), rel=2e-3)
    assert ours["probability_alive"].between(0, 1).all()


def test_buyers_sharing_a_history_get_the_per_buyer_predictions(summary):
    """Each distinct (frequency, recency, T) is predicted once and spread back to its buyers:
    the figures equal lifetimes' row-by-row ones exactly, in the summary's order."""
    histories = summary[["frequency", "recency", "T"]]
    assert histories.duplicated().sum() > 1000  # most one-time buyers share a first day
    bg_nbd, _ = models.fit_bg_nbd(summary)
    gamma_gamma, _ = models.fit_gamma_gamma(summary)
    ours = models.predict_customer_value(
        summary, bg_nbd, gamma_gamma, time_unit_days=WEEK, horizon_months=12,
        annual_discount_rate=0.1,
    )  # fmt: skip
    args = (summary["frequency"], summary["recency"], summary["T"])
    purchases = bg_nbd.conditional_expected_number_of_purchases_up_to_time(
        12 * models.DAYS_PER_MONTH / WEEK, *args
    )
    assert ours.index.equals(summary.index)
    assert ours["expected_purchases"].to_numpy() == pytest.approx(purchases.to_numpy(), rel=1e-12)
    alive = bg_nbd.conditional_probability_alive(*args)
    assert ours["probability_alive"].to_numpy() == pytest.approx(alive, rel=1e-12)
