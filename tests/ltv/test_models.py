"""What the fits do when the data cannot give a model, or the optimiser does not converge."""

from __future__ import annotations

import pandas as pd
import pytest
from lifetimes import BetaGeoFitter
from lifetimes.fitters import ConvergenceError

from crm360.ltv import models


def summary_of(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["frequency", "recency", "T", "monetary_value"], dtype=float)


# five buyers, three of them repeat buyers
FIVE = summary_of([
    (0, 0, 10, 0), (1, 5, 20, 100), (2, 8, 30, 120), (0, 0, 40, 0), (3, 20, 50, 90),
])  # fmt: skip


def test_bg_nbd_needs_five_buyers_and_a_repeat_buyer():
    with pytest.raises(models.ModelNotFitted, match="at least 5 buyers; found 3"):
        models.fit_bg_nbd(FIVE.iloc[:3])
    with pytest.raises(models.ModelNotFitted, match="at least 5 buyers; found 0"):
        models.fit_bg_nbd(FIVE.iloc[:0])
    one_timers = summary_of([(0, 0, t, 0) for t in range(1, 21)])
    with pytest.raises(models.ModelNotFitted, match="a repeat buyer; none of 20 buyers is"):
        models.fit_bg_nbd(one_timers)


def test_gamma_gamma_needs_four_repeat_buyers_with_spend():
    with pytest.raises(models.ModelNotFitted, match="at least 4 repeat buyers .* found 3"):
        models.fit_gamma_gamma(FIVE)
    assert len(models.gamma_gamma_customers(FIVE)) == 3


def test_a_fit_that_fails_without_a_penalty_is_redone_with_a_small_one_and_says_so(monkeypatch):
    fit = BetaGeoFitter.fit
    penalizers = []

    def fit_failing_without_penalty(self, *args, **kwargs):
        penalizers.append(self.penalizer_coef)
        if self.penalizer_coef == 0:
            raise ConvergenceError("did not converge")
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(BetaGeoFitter, "fit", fit_failing_without_penalty)
    _, diagnostics = models.fit_bg_nbd(FIVE, penalizer_coef=0.0)
    assert penalizers == [0.0, 0.001]
    assert not diagnostics.converged
    assert diagnostics.penalizer_coef == 0.001
    assert diagnostics.note == "did not converge at penalizer 0.0; refitted at 0.001"
    assert all(value > 0 for value in diagnostics.params.values())


def test_a_fit_that_fails_at_the_retry_penalty_too_is_not_fitted(monkeypatch):
    def never_converges(self, *args, **kwargs):
        raise ConvergenceError("did not converge")

    monkeypatch.setattr(BetaGeoFitter, "fit", never_converges)
    with pytest.raises(models.ModelNotFitted, match="nor at 0.1: ConvergenceError"):
        models.fit_bg_nbd(FIVE, penalizer_coef=0.01)


def test_the_retry_penalizer_is_ten_times_the_asked_one_and_at_least_0_001():
    assert models.retry_penalizer(0.0) == 0.001
    assert models.retry_penalizer(0.0001) == 0.001
    assert models.retry_penalizer(0.01) == 0.1
