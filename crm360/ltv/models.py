"""BG/NBD (purchases and dropout) and Gamma-Gamma (spend per purchase) fits with lifetimes, their
diagnostics, and the predictions the customer LTV mart keeps.

A fitted model is kept as its parameters only (the `ltv_model_fits` mart): `bg_nbd_from_params`
and `gamma_gamma_from_params` rebuild a fitter from them, so predictions never refit. A fit the
data cannot support (too few buyers, no repeat purchase, an optimiser that fails even with the
retry penalty) raises ModelNotFitted with the reason, which the mart records.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    from lifetimes import BetaGeoFitter, GammaGammaFitter

log = logging.getLogger(__name__)

BG_NBD_PARAMS = ("r", "alpha", "a", "b")
GAMMA_GAMMA_PARAMS = ("p", "q", "v")
DAYS_PER_MONTH = 365.25 / 12
# the penalizer of the second try when a fit does not converge without a penalty
RETRY_MIN_PENALIZER = 0.001


class ModelNotFitted(ValueError):
    """The data cannot give the model's parameters; the message says why (it is recorded)."""


def retry_penalizer(penalizer_coef: float) -> float:
    """The penalizer of the second try of a fit that did not converge at `penalizer_coef`."""
    return max(penalizer_coef * 10, RETRY_MIN_PENALIZER)


@dataclass(frozen=True)
class FitDiagnostics:
    """What a fit gives besides its parameters. `log_likelihood` is the unpenalised total over
    the customers, in the summary's time unit; `converged` is False when the optimiser failed at
    the asked penalizer and the fit was redone at `penalizer_coef` (retry_penalizer of the
    asked one), which `note` then says. The mart also keeps, for a model that could not be
    fitted, diagnostics without parameters or log-likelihood whose `note` gives the reason."""

    model: str
    params: dict[str, float]
    log_likelihood: float | None
    customer_count: int
    fit_seconds: float
    converged: bool
    penalizer_coef: float
    library: str = "lifetimes"
    library_version: str = field(default_factory=lambda: _lifetimes_version())
    spend_frequency_correlation: float | None = None
    note: str | None = None


def _lifetimes_version() -> str:
    from importlib.metadata import version

    return version("lifetimes")


def fit_library_version() -> str:
    """The version of the library the fits are made with (a fit of another is not reused)."""
    return _lifetimes_version()


def fit_bg_nbd(
    summary: pd.DataFrame, penalizer_coef: float = 0.0
) -> tuple[BetaGeoFitter, FitDiagnostics]:
    """Fit BG/NBD on `frequency`, `recency`, `T` of every customer in the summary. Raises
    ModelNotFitted with fewer buyers than parameters + 1 or without a repeat buyer (the
    likelihood then grows without bound as the purchase rate goes to 0)."""
    from lifetimes import BetaGeoFitter

    frequency, recency, age = _bg_nbd_inputs(summary)
    if len(frequency) < len(BG_NBD_PARAMS) + 1:
        raise ModelNotFitted(
            f"BG/NBD needs at least {len(BG_NBD_PARAMS) + 1} buyers; found {len(frequency)}"
        )
    if not (frequency > 0).any():
        raise ModelNotFitted(f"BG/NBD needs a repeat buyer; none of {len(frequency)} buyers is")

    def fit(penalizer: float) -> BetaGeoFitter:
        return BetaGeoFitter(penalizer_coef=penalizer).fit(frequency, recency, age)

    fitter, seconds, converged, penalizer = _fit_with_retry(fit, penalizer_coef, "bg_nbd")
    params = _fitted_params(fitter, BG_NBD_PARAMS, "BG/NBD")
    return fitter, FitDiagnostics(
        model="bg_nbd",
        params=params,
        log_likelihood=bg_nbd_log_likelihood(params, frequency, recency, age),
        customer_count=len(frequency),
        fit_seconds=seconds,
        converged=converged,
        penalizer_coef=penalizer,
        note=_retry_note(converged, penalizer_coef, penalizer),
    )


def fit_gamma_gamma(
    summary: pd.DataFrame, penalizer_coef: float = 0.0
) -> tuple[GammaGammaFitter, FitDiagnostics]:
    """Fit Gamma-Gamma on the repeat buyers with a positive `monetary_value`. The model assumes
    spend per purchase independent of the number of purchases: the diagnostics keep the Pearson
    correlation of the two over those customers (close to 0 is what the model needs)."""
    from lifetimes import GammaGammaFitter

    repeat = gamma_gamma_customers(summary)
    if len(repeat) < len(GAMMA_GAMMA_PARAMS) + 1:
        raise ModelNotFitted(
            f"Gamma-Gamma needs at least {len(GAMMA_GAMMA_PARAMS) + 1} repeat buyers with a "
            f"positive monetary value; found {len(repeat)}"
        )
    frequency = repeat["frequency"].to_numpy(dtype=float)
    monetary = repeat["monetary_value"].to_numpy(dtype=float)
    # Fit on spend in units of its mean: v is a scale parameter (it scales with the currency)
    # while p and q do not, so the fit is the same up to v, but the penalty on the parameters
    # does not depend on the currency (in yen, any penalty would crush v).
    unit = float(monetary.mean())

    def fit(penalizer: float) -> GammaGammaFitter:
        return GammaGammaFitter(penalizer_coef=penalizer).fit(frequency, monetary / unit)

    fitter, seconds, converged, penalizer = _fit_with_retry(fit, penalizer_coef, "gamma_gamma")
    params = _fitted_params(fitter, GAMMA_GAMMA_PARAMS, "Gamma-Gamma")
    params["v"] *= unit
    correlation = (
        float(np.corrcoef(frequency, monetary)[0, 1])
        if np.ptp(frequency) > 0 and np.ptp(monetary) > 0
        else None
    )
    return fitter, FitDiagnostics(
        model="gamma_gamma",
        params=params,
        log_likelihood=gamma_gamma_log_likelihood(params, frequency, monetary),
        customer_count=len(frequency),
        fit_seconds=seconds,
        converged=converged,
        penalizer_coef=penalizer,
        spend_frequency_correlation=correlation,
        note=_retry_note(converged, penalizer_coef, penalizer),
    )


def gamma_gamma_customers(summary: pd.DataFrame) -> pd.DataFrame:
    """The customers Gamma-Gamma is fitted on: repeat buyers with a positive mean spend."""
    return summary[(summary["frequency"] > 0) & (summary["monetary_value"] > 0)]


def _fit_with_retry(fit, penalizer_coef: float, model: str):
    """Fit; if the optimiser does not converge, fit again at retry_penalizer(penalizer_coef).
    Returns the fitter, seconds, whether the first try converged and the penalizer of the fit
    returned; raises ModelNotFitted when the second try fails too."""
    started = time.perf_counter()
    try:
        fitter = _try_fit(fit, penalizer_coef)
        return fitter, time.perf_counter() - started, True, penalizer_coef
    except _FitFailed as failure:
        retry = retry_penalizer(penalizer_coef)
        log.warning(
            "%s did not converge at penalizer %s (%s); refitting at %s",
            model, penalizer_coef, failure, retry,
        )  # fmt: skip
    try:
        fitter = _try_fit(fit, retry)
    except _FitFailed as failure:
        raise ModelNotFitted(
            f"{model} did not converge at penalizer {penalizer_coef} nor at {retry}: {failure}"
        ) from failure
    return fitter, time.perf_counter() - started, False, retry


class _FitFailed(Exception):
    """The optimiser did not converge or its result has no usable curvature."""


def _try_fit(fit, penalizer: float):
    """fit(penalizer), its failures (no convergence, a singular Hessian) raised as _FitFailed."""
    from lifetimes.fitters import ConvergenceError

    try:
        return fit(penalizer)
    except (ConvergenceError, np.linalg.LinAlgError) as error:
        raise _FitFailed(type(error).__name__) from error


def _fitted_params(fitter, names: tuple[str, ...], model: str) -> dict[str, float]:
    """The fitter's parameters; ModelNotFitted unless every one is finite and positive."""
    params = {name: float(fitter.params_[name]) for name in names}
    if not all(math.isfinite(value) and value > 0 for value in params.values()):
        raise ModelNotFitted(f"{model} parameters not finite and positive: {params}")
    return params


def _retry_note(converged: bool, asked: float, used: float) -> str | None:
    return None if converged else f"did not converge at penalizer {asked}; refitted at {used}"


def _bg_nbd_inputs(summary: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        summary["frequency"].to_numpy(dtype=float),
        summary["recency"].to_numpy(dtype=float),
        summary["T"].to_numpy(dtype=float),
    )


def bg_nbd_log_likelihood(
    params: dict[str, float], frequency: np.ndarray, recency: np.ndarray, age: np.ndarray
) -> float:
    """Total BG/NBD log-likelihood (Fader, Hardie & Lee 2005, eq. 6), no penalty."""
    from lifetimes import BetaGeoFitter

    log_params = np.log([params[name] for name in BG_NBD_PARAMS])
    weights = np.ones_like(frequency)
    mean = BetaGeoFitter._negative_log_likelihood(log_params, frequency, recency, age, weights, 0.0)
    return float(-mean * len(frequency))


def gamma_gamma_log_likelihood(
    params: dict[str, float], frequency: np.ndarray, monetary: np.ndarray
) -> float:
    """Total Gamma-Gamma log-likelihood of the repeat buyers' mean spend, no penalty."""
    from lifetimes import GammaGammaFitter

    log_params = np.log([params[name] for name in GAMMA_GAMMA_PARAMS])
    weights = np.ones_like(frequency)
    mean = GammaGammaFitter._negative_log_likelihood(log_params, frequency, monetary, weights, 0.0)
    return float(-mean * len(frequency))


def bg_nbd_from_params(params: dict[str, float]) -> BetaGeoFitter:
    """A BetaGeoFitter that predicts with the given parameters (no fit)."""
    import pandas as pd
    from lifetimes import BetaGeoFitter

    fitter = BetaGeoFitter()
    fitter.params_ = pd.Series({name: float(params[name]) for name in BG_NBD_PARAMS})
    return fitter


def gamma_gamma_from_params(params: dict[str, float]) -> GammaGammaFitter:
    """A GammaGammaFitter that predicts with the given parameters (no fit)."""
    import pandas as pd
    from lifetimes import GammaGammaFitter

    fitter = GammaGammaFitter()
    fitter.params_ = pd.Series({name: float(params[name]) for name in GAMMA_GAMMA_PARAMS})
    return fitter


def monthly_discount_rate(annual_discount_rate: float) -> float:
    """The monthly rate that compounds to the annual one."""
    return (1.0 + annual_discount_rate) ** (1.0 / 12.0) - 1.0


def predict_customer_value(
    summary: pd.DataFrame,
    bg_nbd: BetaGeoFitter,
    gamma_gamma: GammaGammaFitter | None,
    *,
    time_unit_days: float,
    horizon_months: int,
    annual_discount_rate: float,
) -> pd.DataFrame:
    """Per customer of the summary: probability alive, expected purchases and expected average
    order value over the horizon, and the discounted value of those purchases (`clv`).

    The CLV sums, month by month, the expected purchases of the month times the expected order
    value, discounted at the monthly rate equivalent to `annual_discount_rate` (a month is
    365.25 / 12 days, converted to the summary's time unit). Without a Gamma-Gamma model the
    order value and the CLV are NaN. The figures are the formulas' own: a caller checks that
    they are finite."""
    import pandas as pd

    # buyers share histories (one purchase on the same day, ...): each distinct
    # (frequency, recency, age) is predicted once, less than half the buyers at scale
    # (grouped by hashing: np.unique over rows sorts them, five times slower at a million)
    history = summary.groupby(["frequency", "recency", "T"], sort=False, dropna=False)
    of_buyer = history.ngroup().to_numpy()
    first_buyer = np.unique(of_buyer, return_index=True)[1]
    frequency, recency, age = (values[first_buyer] for values in _bg_nbd_inputs(summary))
    months_per_unit = DAYS_PER_MONTH / time_unit_days
    cumulative = [np.zeros(len(summary))]
    for month in range(1, horizon_months + 1):
        expected = bg_nbd.conditional_expected_number_of_purchases_up_to_time(
            month * months_per_unit, frequency, recency, age
        )
        cumulative.append(np.asarray(expected, dtype=float)[of_buyer])
    order_value = (
        np.asarray(
            gamma_gamma.conditional_expected_average_profit(
                summary["frequency"].astype(float), summary["monetary_value"].astype(float)
            ),
            dtype=float,
        )
        if gamma_gamma is not None
        else np.full(len(summary), np.nan)
    )
    rate = monthly_discount_rate(annual_discount_rate)
    clv = np.zeros(len(summary))
    for month in range(1, horizon_months + 1):
        clv += order_value * (cumulative[month] - cumulative[month - 1]) / (1 + rate) ** month
    alive = bg_nbd.conditional_probability_alive(frequency, recency, age)
    return pd.DataFrame(
        {
            "probability_alive": np.asarray(alive, dtype=float)[of_buyer],
            "expected_purchases": cumulative[-1],
            "expected_avg_order_value": order_value,
            "clv": clv,
        },
        index=summary.index,
    )
