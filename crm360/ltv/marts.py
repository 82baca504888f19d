"""The frames behind the LTV and churn marts, from the warehouse tables as pandas frames.

The dbt Python models (`dbt_project/models/marts/ltv/`, `.../churn/`) only read their refs,
call these functions and return the result, so the logic is tested without dbt.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING

import numpy as np

from crm360.ltv import churn, models
from crm360.ltv.summary import summary_sql
from crm360.warehouse import registered

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

FIT_PARAM_COLUMNS = {name: f"param_{name}" for name in (*models.BG_NBD_PARAMS, "p", "q", "v")}


@dataclass(frozen=True)
class LtvSettings:
    """The `ltv` dbt vars and the run's date."""

    as_of: date
    time_unit_days: float = 7.0
    horizon_months: int = 12
    annual_discount_rate: float = 0.10
    # 0: plain maximum likelihood, the published fits; a fit that does not converge is redone
    # with a small penalty (models.retry_penalizer), and ltv_model_fits records it
    penalizer_coef: float = 0.0
    # the fits of an earlier run are reused while younger than this many days and while the
    # number of buyers has changed by at most refit_after_growth (0: refit on every run)
    refit_after_days: int = 7
    refit_after_growth: float = 0.1

    @property
    def calibration_end(self) -> date:
        """The last whole day before as_of: orders before as_of are the calibration period."""
        return self.as_of - timedelta(days=1)


def as_arrow(frame: pd.DataFrame, text_columns: tuple[str, ...] = ()):
    """The frame as an Arrow table, so that date columns land as DATE in DuckDB (a pandas
    column of dates would become a timestamp). `text_columns`, and `*_date` columns, keep
    their type when the frame is empty or the column all null (an object column of nulls
    would land as a column of type NULL)."""
    import pyarrow as pa

    frame = frame.astype({column: "string" for column in text_columns})
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for index, column in enumerate(table.schema):
        if pa.types.is_null(column.type) and column.name.endswith("_date"):
            table = table.set_column(index, column.name, table.column(index).cast(pa.date32()))
    return table


def parse_as_of(value: object) -> date:
    """The as-of date of a Python model's config (the `as_of_date` var, else the
    CRM360_AS_OF_DATE environment variable) as a date; today when neither is set (as the
    as_of_date macro)."""
    if value in (None, "", "None", "none", "null"):
        return date.today()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def buyer_transactions_sql(orders_sql: str, as_of: date) -> str:
    """SQL of the completed orders placed before as_of by a known customer (customer_id,
    ordered_at, revenue and gross_margin as doubles), from the SQL of int_orders__priced."""
    return (
        "select customer_id, ordered_at, cast(revenue as double) as revenue, "
        f"cast(gross_margin as double) as gross_margin from ({orders_sql}) "
        "where is_completed and customer_id is not null "
        f"and ordered_at < timestamp '{as_of.isoformat()}'"
    )


def _summary_of_buyers_sql(transactions_sql: str, settings: LtvSettings) -> str:
    """SQL of the buy-till-you-die summary of the buyers in `transactions_sql` (as
    buyer_transactions_sql gives them): purchase days are the orders' UTC calendar days."""
    return summary_sql(
        "select customer_id, cast(ordered_at as date) as day, revenue as value "
        f"from ({transactions_sql})",
        settings.calibration_end,
        settings.time_unit_days,
    )


FIT_TEXT_COLUMNS = ("model_fit_id", "model_name", "fit_note", "library", "library_version")


def model_fits(session, orders, settings: LtvSettings) -> pd.DataFrame:
    """Fit BG/NBD and Gamma-Gamma on the buyers as of the run: one row per model. `orders` is
    the DuckDB relation of int_orders__priced, `session` its connection. A model the data
    cannot give keeps its row, is_fitted false, no parameters and the reason in fit_note."""
    import pandas as pd

    transactions = buyer_transactions_sql(orders.sql_query(), settings.as_of)
    summary = session.sql(_summary_of_buyers_sql(transactions, settings)).df()
    fits = [
        _fit_or_reason(models.fit_bg_nbd, summary, settings, "bg_nbd", len(summary)),
        _fit_or_reason(
            models.fit_gamma_gamma, summary, settings, "gamma_gamma",
            len(models.gamma_gamma_customers(summary)),
        ),
    ]  # fmt: skip
    rows = []
    for fit in fits:
        row = {
            "model_fit_id": f"{settings.as_of.isoformat()}:{fit.model}",
            "as_of_date": settings.as_of,
            "fitted_as_of_date": settings.as_of,
            "model_name": fit.model,
        }
        row.update({column: fit.params.get(name) for name, column in FIT_PARAM_COLUMNS.items()})
        row.update(
            log_likelihood=fit.log_likelihood,
            customer_count=fit.customer_count,
            fit_seconds=round(fit.fit_seconds, 4),
            is_fitted=bool(fit.params),
            is_converged=fit.converged,
            penalizer_coef=fit.penalizer_coef,
            fit_note=fit.note,
            spend_frequency_correlation=fit.spend_frequency_correlation,
            calibration_end_date=settings.calibration_end,
            time_unit_days=float(settings.time_unit_days),
            horizon_months=int(settings.horizon_months),
            annual_discount_rate=float(settings.annual_discount_rate),
            library=fit.library,
            library_version=fit.library_version,
        )
        rows.append(row)
    frame = pd.DataFrame(rows)
    for column in ("as_of_date", "fitted_as_of_date", "calibration_end_date"):
        frame[column] = pd.to_datetime(frame[column]).dt.date
    # numbers stay numbers when a model has none (an unfitted model's parameters are null)
    numbers = [*FIT_PARAM_COLUMNS.values(), "log_likelihood", "spend_frequency_correlation"]
    return frame.astype({column: "float64" for column in numbers})


def _fit_or_reason(fit, summary, settings: LtvSettings, model: str, customers: int):
    """fit(summary, penalizer)'s diagnostics; when the data cannot give the model, diagnostics
    without parameters whose note says why."""
    started = time.perf_counter()
    try:
        return fit(summary, settings.penalizer_coef)[1]
    except models.ModelNotFitted as reason:
        log.warning("no %s model for %s: %s", model, settings.as_of, reason)
        return models.FitDiagnostics(
            model=model,
            params={},
            log_likelihood=None,
            customer_count=customers,
            fit_seconds=time.perf_counter() - started,
            converged=False,
            penalizer_coef=settings.penalizer_coef,
            note=f"not fitted: {reason}",
        )


def _with_dates(previous: pd.DataFrame, made_on: str, others: list[str]) -> pd.DataFrame:
    """Earlier rows of an incremental model with their date columns as dates (they come back
    from the warehouse as timestamps) and `made_on` (the date the model was fitted or trained)
    filled with as_of_date in rows written before that column existed."""
    import pandas as pd

    previous = previous.copy()
    for column in ("as_of_date", made_on, *others):
        values = previous[column] if column in previous else pd.Series(None, index=previous.index)
        previous[column] = [None if pd.isna(v) else pd.Timestamp(v).date() for v in values]
    previous[made_on] = [
        made if made is not None else as_of
        for made, as_of in zip(previous[made_on], previous["as_of_date"], strict=True)
    ]
    return previous


def _latest_before(
    previous: pd.DataFrame | None, as_of: date, made_on: str, others: list[str]
) -> pd.DataFrame | None:
    """The rows of the latest as_of_date before `as_of` in an incremental model's table (with
    dates as _with_dates gives them), or None when there is none."""
    if previous is None or previous.empty:
        return None
    previous = _with_dates(previous, made_on, others)
    earlier = previous[previous["as_of_date"] < as_of]
    if earlier.empty:
        return None
    return earlier[earlier["as_of_date"] == earlier["as_of_date"].max()].copy()


def buyer_count_sql(orders_sql: str, as_of: date) -> str:
    """SQL counting the buyers model_fits would fit on."""
    return f"select count(distinct customer_id) from ({buyer_transactions_sql(orders_sql, as_of)})"


def reusable_fits(
    previous: pd.DataFrame, buyers: int, settings: LtvSettings
) -> pd.DataFrame | None:
    """The fits of the latest earlier run, restamped for settings.as_of, when they may be
    reused: fitted fewer than refit_after_days days before as_of, both models fitted, with
    the same time unit, penalizer and library version, and a buyer count within
    refit_after_growth of the one fitted. None means: fit again. A fit redone with the retry
    penalty (is_converged false) is what this penalizer gives on that data, so it is reused
    like a converged one.

    `previous`: ltv_model_fits rows of earlier as_of dates (fitted_as_of_date null in rows
    written before that column existed: those were fitted on their own date, and is_fitted
    null in rows written before that one: every model was fitted)."""
    import pandas as pd

    if settings.refit_after_days <= 0:
        return None
    latest = _latest_before(previous, settings.as_of, "fitted_as_of_date", ["calibration_end_date"])
    if latest is None or sorted(latest["model_name"]) != ["bg_nbd", "gamma_gamma"]:
        return None
    fitted = latest["fitted_as_of_date"].iloc[0]
    bg_nbd = latest[latest["model_name"] == "bg_nbd"].iloc[0]
    library_version = models.fit_library_version()
    is_fitted = latest.get("is_fitted", pd.Series(True, index=latest.index))
    is_converged = latest["is_converged"].astype(bool).to_numpy()
    # the penalizer a fit with these settings ends at: the asked one, or the retry's
    penalizer = np.where(
        is_converged,
        float(settings.penalizer_coef),
        models.retry_penalizer(float(settings.penalizer_coef)),
    )
    reasons = [
        (settings.as_of - fitted).days >= settings.refit_after_days
        and f"fitted {(settings.as_of - fitted).days} days ago",
        (latest["fitted_as_of_date"] != fitted).any() and "models fitted on different dates",
        not is_fitted.fillna(True).astype(bool).all() and "a model was not fitted",
        (latest["time_unit_days"].astype(float) != float(settings.time_unit_days)).any()
        and "time unit changed",
        (latest["penalizer_coef"].astype(float).to_numpy() != penalizer).any()
        and "penalizer changed",
        (latest["library_version"] != library_version).any() and "library version changed",
        abs(buyers - int(bg_nbd["customer_count"]))
        > settings.refit_after_growth * int(bg_nbd["customer_count"])
        and f"buyers {int(bg_nbd['customer_count']):,} -> {buyers:,}",
    ]
    reasons = [r for r in reasons if r]
    if reasons:
        log.info("refitting the LTV models for %s: %s", settings.as_of, "; ".join(reasons))
        return None
    log.info("reusing the LTV models fitted for %s on %s", fitted, settings.as_of)
    latest["model_fit_id"] = settings.as_of.isoformat() + ":" + latest["model_name"]
    latest["as_of_date"] = settings.as_of
    latest["fitted_as_of_date"] = fitted
    latest["horizon_months"] = int(settings.horizon_months)
    latest["annual_discount_rate"] = float(settings.annual_discount_rate)
    latest["is_fitted"] = True  # only fitted models are reused
    return latest.sort_values("model_name").reset_index(drop=True)


def params_of(fits: pd.DataFrame, model_name: str, as_of: date) -> dict[str, float] | None:
    """The parameters of one model fitted for as_of, from the ltv_model_fits rows; None when
    that run could not fit the model (its row says why)."""
    import pandas as pd

    rows = fits[
        (fits["model_name"] == model_name) & (pd.to_datetime(fits["as_of_date"]).dt.date == as_of)
    ]
    if len(rows) != 1:
        raise LookupError(f"ltv_model_fits has {len(rows)} {model_name} rows for {as_of}")
    names = models.BG_NBD_PARAMS if model_name == "bg_nbd" else models.GAMMA_GAMMA_PARAMS
    params = {name: float(rows.iloc[0][FIT_PARAM_COLUMNS[name]]) for name in names}
    if rows.iloc[0].get("is_fitted") is False or not all(np.isfinite(list(params.values()))):
        return None
    return params


# per customer of customer_360 (ordered by id): the order history and the summary the
# predictions take, computed where the orders are; `{buyers}` is the SQL of the buyers'
# transactions, `{summary}` the SQL of the summary of `buyers`, `{recent_from}` the start of
# the last horizon before as_of (the historical fallback's revenue)
_LTV_INPUTS_SQL = """
with buyers as ({buyers}),
history as (
    select customer_id,
        count(*) as order_count,
        sum(revenue) as historical_revenue,
        sum(gross_margin) as historical_gross_margin,
        coalesce(sum(revenue) filter (where ordered_at >= {recent_from}), 0) as recent_revenue,
        min(ordered_at) as first_ordered_at,
        max(ordered_at) as last_ordered_at,
    from buyers
    group by customer_id
)
select customers.customer_id, history.* exclude (customer_id),
    summary.frequency, summary.recency, summary.T, summary.monetary_value,
from (select distinct customer_id from ({customers})) as customers
left join history using (customer_id)
left join ({summary}) as summary using (customer_id)
order by customers.customer_id
"""


# customer_ltv.ltv_method, and ltv_fallback_reason when the method is the historical one
LTV_METHOD_MODEL = "bg_nbd_gamma_gamma"
LTV_METHOD_HISTORICAL = "historical"
FALLBACK_BG_NBD_NOT_FITTED = "bg_nbd_not_fitted"
FALLBACK_GAMMA_GAMMA_NOT_FITTED = "gamma_gamma_not_fitted"
FALLBACK_PREDICTION_NOT_FINITE = "prediction_not_finite"
PREDICTION_COLUMNS = ["probability_alive", "expected_purchases", "expected_avg_order_value", "clv"]


def customer_ltv(
    session, customers, orders, fits: pd.DataFrame, settings: LtvSettings
) -> pd.DataFrame:
    """One row per customer: history, BG/NBD + Gamma-Gamma predictions with the parameters
    fitted for as_of, revenue and gross-margin LTV. Customers without a completed order keep
    zeros for their history and nulls for every model figure. A buyer whose LTV the models
    cannot give (a model not fitted for as_of, a prediction not finite) gets the historical
    one (historical_ltv) with the reason in ltv_fallback_reason, never a null.

    `customers` and `orders` are the DuckDB relations of customer_360 and int_orders__priced,
    `session` their connection: the history and the summary are computed there, and only the
    per-customer figures come into pandas."""
    import pandas as pd

    recent_from = (
        f"timestamp '{settings.as_of.isoformat()}' - interval {int(settings.horizon_months)} month"
    )
    frame = session.sql(
        _LTV_INPUTS_SQL.format(
            buyers=buyer_transactions_sql(orders.sql_query(), settings.as_of),
            customers=customers.sql_query(),
            summary=_summary_of_buyers_sql("from buyers", settings),
            recent_from=recent_from,
        )
    ).df()
    bg_nbd = params_of(fits, "bg_nbd", settings.as_of)
    gamma_gamma = params_of(fits, "gamma_gamma", settings.as_of)
    buyer = frame["order_count"].notna().to_numpy()
    summary = frame.loc[buyer, ["frequency", "recency", "T", "monetary_value"]]
    if bg_nbd is not None and len(summary):
        # a figure that is not finite is expected at some parameters, and handled below
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            predicted = models.predict_customer_value(
                summary,
                models.bg_nbd_from_params(bg_nbd),
                models.gamma_gamma_from_params(gamma_gamma) if gamma_gamma is not None else None,
                time_unit_days=settings.time_unit_days,
                horizon_months=settings.horizon_months,
                annual_discount_rate=settings.annual_discount_rate,
            )
    else:
        predicted = pd.DataFrame(np.nan, index=summary.index, columns=PREDICTION_COLUMNS)
    frame = frame.join(_with_fallback(predicted, frame.loc[buyer], bg_nbd, gamma_gamma, settings))
    frame = frame.rename(columns={"T": "customer_age", "clv": "predicted_revenue_ltv"})
    revenue = frame["historical_revenue"].to_numpy(dtype=float)
    margin = frame["historical_gross_margin"].to_numpy(dtype=float)
    total_revenue = revenue[buyer].sum()
    overall_rate = margin[buyer].sum() / total_revenue if total_revenue else 0
    own_rate = pd.Series(
        np.divide(margin, revenue, out=np.full(len(frame), np.nan), where=revenue > 0),
        index=frame.index,
    )
    frame["gross_margin_rate"] = own_rate
    frame["margin_rate_basis"] = np.where(
        own_rate.notna(), "customer", np.where(buyer, "overall", None)
    )
    frame["applied_margin_rate"] = own_rate.fillna(overall_rate).where(buyer)
    frame["order_count"] = frame["order_count"].fillna(0).astype("int64")
    frame["historical_revenue"] = frame["historical_revenue"].fillna(0.0)
    frame["historical_gross_margin"] = frame["historical_gross_margin"].fillna(0.0)
    frame["predicted_gross_margin_ltv"] = (
        frame["predicted_revenue_ltv"] * frame["applied_margin_rate"]
    )
    for column in ("predicted_revenue_ltv", "predicted_gross_margin_ltv"):
        frame[column] = frame[column].round(2)
    frame["time_unit_days"] = float(settings.time_unit_days)
    frame["horizon_months"] = int(settings.horizon_months)
    frame["as_of_date"] = settings.as_of
    # numbers stay numbers when no customer has one (no buyer, no model)
    return frame[LTV_COLUMNS].astype({column: "float64" for column in LTV_FLOAT_COLUMNS})


def historical_ltv(recent_revenue: np.ndarray, settings: LtvSettings) -> np.ndarray:
    """The LTV a buyer gets when the models cannot give one: the revenue of their last
    horizon_months months, as if the next horizon repeats it spread evenly over its months,
    discounted like the models' LTV (at the monthly rate equivalent to the annual one)."""
    rate = models.monthly_discount_rate(settings.annual_discount_rate)
    months = np.arange(1, int(settings.horizon_months) + 1)
    mean_discount = float(np.mean(1.0 / (1.0 + rate) ** months)) if len(months) else 0.0
    return np.asarray(recent_revenue, dtype=float) * mean_discount


def _with_fallback(
    predicted: pd.DataFrame,
    buyers: pd.DataFrame,
    bg_nbd: dict | None,
    gamma_gamma: dict | None,
    settings: LtvSettings,
) -> pd.DataFrame:
    """The buyers' predictions with ltv_method and ltv_fallback_reason: the models' LTV when
    every figure behind it is finite (and the spend and purchases not negative), else the
    historical LTV; a figure that is not finite is left null."""
    predicted = predicted.copy()
    values = predicted[PREDICTION_COLUMNS].to_numpy(dtype=float)
    usable = np.isfinite(values).all(axis=1) & (values[:, 1:] >= 0).all(axis=1)
    for column in PREDICTION_COLUMNS:
        predicted[column] = predicted[column].where(np.isfinite(predicted[column]))
    if bg_nbd is None:
        reason = FALLBACK_BG_NBD_NOT_FITTED
    elif gamma_gamma is None:
        reason = FALLBACK_GAMMA_GAMMA_NOT_FITTED
    else:
        reason = FALLBACK_PREDICTION_NOT_FINITE
    predicted["ltv_method"] = np.where(usable, LTV_METHOD_MODEL, LTV_METHOD_HISTORICAL)
    predicted["ltv_fallback_reason"] = np.where(usable, None, reason)
    predicted["clv"] = np.where(
        usable, predicted["clv"], historical_ltv(buyers["recent_revenue"], settings)
    )
    fallbacks = int((~usable).sum())
    if fallbacks:
        log.warning(
            "%d of %d buyers get the historical LTV for %s (%s)",
            fallbacks, len(predicted), settings.as_of, reason,
        )  # fmt: skip
    return predicted


LTV_COLUMNS = [
    "customer_id",
    "order_count",
    "historical_revenue",
    "historical_gross_margin",
    "gross_margin_rate",
    "first_ordered_at",
    "last_ordered_at",
    "frequency",
    "recency",
    "customer_age",
    "probability_alive",
    "expected_purchases",
    "expected_avg_order_value",
    "predicted_revenue_ltv",
    "ltv_method",
    "ltv_fallback_reason",
    "applied_margin_rate",
    "margin_rate_basis",
    "predicted_gross_margin_ltv",
    "time_unit_days",
    "horizon_months",
    "as_of_date",
]
LTV_TEXT_COLUMNS = ("customer_id", "ltv_method", "ltv_fallback_reason", "margin_rate_basis")
LTV_FLOAT_COLUMNS = [
    column
    for column in LTV_COLUMNS
    if column not in (*LTV_TEXT_COLUMNS, "order_count", "horizon_months", "as_of_date")
    and not column.endswith("_at")
]


# --- churn ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChurnSettings:
    as_of: date
    label_days: int = 90
    train_snapshots: int = 4
    band_low: float = 0.3
    band_medium: float = 0.6
    calibration_bins: int = 5
    # the model of an earlier run is reused while younger than this many days (0: retrain on
    # every run)
    retrain_after_days: int = 7
    # a buyer BG/NBD cannot score: churn probability = days since the last order / this,
    # at most 1 (lifecycle.churned_days: the days without an order after which a buyer is
    # churned)
    churned_days: int = 365


# What the churn features read, computed in DuckDB so that pandas only ever holds the rows of
# subscribers (the only customers the features are measured for) and, of the web log (the
# largest table of the warehouse), only the events that start a session. `{name}` is the SQL
# of the ref of that name.
_CHURN_CTES = """
with linked as (select customer_id, source, source_key from ({linked})),
subscriptions as (
    select s.*, l.customer_id
    from ({subscriptions}) as s
    join linked as l on l.source = 'shop' and l.source_key = cast(s.shop_customer_id as varchar)
),
subscribers as (select distinct customer_id from subscriptions),
subscriber_records as (
    select source, source_key, customer_id from linked
    where customer_id in (select customer_id from subscribers)
)
"""
_CHURN_QUERIES = {
    "subscriptions": "select * from subscriptions",
    "orders": """
        select customer_id, ordered_at, is_completed from ({orders})
        where is_completed and customer_id in (select customer_id from subscribers)""",
    # a device's event more than WEB_SESSION_GAP after its previous one starts a session
    # (churn.web_session_starts applied to these rows returns them unchanged)
    "web_events": """
        select customer_id, anonymous_id, occurred_at
        from (
            select r.customer_id, e.anonymous_id, e.occurred_at,
                   lag(e.occurred_at) over (partition by e.anonymous_id order by e.occurred_at)
                       as previous_at
            from ({web_events}) as e
            join subscriber_records as r on r.source = 'web' and r.source_key = e.anonymous_id
        )
        where previous_at is null or occurred_at - previous_at > {session_gap}""",
    "email_events": """
        select r.customer_id, e.campaign_id, e.event_type, e.occurred_at
        from ({email_events}) as e
        join subscriber_records as r on r.source = 'crm' and r.source_key = e.contact_id
        where e.event_type in ('open', 'click')""",
    "tickets": """
        select r.customer_id, t.created_at, t.resolved_at, t.csat_score
        from ({tickets}) as t
        join subscriber_records as r on r.source = 'support' and r.source_key = t.ticket_id""",
}


def read_churn_sources(session, **relations) -> churn.ChurnSources:
    """The churn features' logs of subscribers, each with its customer id from the identity
    graph (records it does not link are left out), read from the DuckDB relations of a dbt
    Python model's refs: linked, subscriptions, orders, web_events, email_events, tickets."""
    sql = {name: relation.sql_query() for name, relation in relations.items()}
    gap = f"interval {int(churn.WEB_SESSION_GAP.total_seconds())} seconds"
    frames = {
        name: session.sql((_CHURN_CTES + query).format(**sql, session_gap=gap)).df()
        for name, query in _CHURN_QUERIES.items()
    }
    # the web rows read are the session starts already: they are not found again in pandas
    sessions = frames["web_events"][["customer_id", "occurred_at"]]
    return churn.ChurnSources(
        **frames, web_sessions=sessions.rename(columns={"occurred_at": "started_at"})
    )


def churn_model_evaluation(
    sources: churn.ChurnSources, settings: ChurnSettings
) -> tuple[pd.DataFrame, churn.ChurnModel | None]:
    """Train on the training cutoffs, evaluate on the holdout cutoff: one row for as_of. When
    the training snapshots lack a cancelled or a kept subscription, the row says so
    (is_model_trained false, the reason in model_not_trained_reason, no AUC, no coefficients)
    and no subscription is scored."""
    import json

    import pandas as pd

    split = churn.time_split(settings.as_of, settings.label_days, settings.train_snapshots)
    train = pd.concat(
        [churn.snapshot(sources, cutoff, split.label_days) for cutoff in split.train],
        ignore_index=True,
    )
    holdout = churn.snapshot(sources, split.holdout, split.label_days)
    reason = None
    try:
        model = churn.fit_churn_model(train)
    except churn.NotEnoughTrainingData as error:
        log.warning("no subscription churn model for %s: %s", settings.as_of, error)
        model, reason = None, str(error)
    result = churn.evaluate(model, holdout, settings.calibration_bins)
    row = {
        "as_of_date": settings.as_of,
        "trained_as_of_date": settings.as_of,
        "model_name": "subscription_logistic_regression",
        "label_days": settings.label_days,
        "train_first_cutoff_date": split.train[0],
        "train_last_cutoff_date": split.train[-1],
        "holdout_cutoff_date": split.holdout,
        "train_row_count": len(train),
        "train_cancelled_count": int(train["is_cancelled"].sum()),
        "holdout_row_count": result["row_count"],
        "holdout_cancelled_count": result["cancelled_count"],
        "holdout_base_rate": result["base_rate"],
        "holdout_auc": result["auc"],
        "holdout_brier_score": result["brier_score"],
        "calibration_bins": json.dumps(result["calibration"]),
        "is_model_trained": model is not None,
        "model_not_trained_reason": reason,
        "model_coefficients": model.to_json() if model is not None else None,
        "library": "scikit-learn",
        "library_version": _version("scikit-learn"),
    }
    frame = pd.DataFrame([row])
    for column in ("as_of_date", "trained_as_of_date", "train_first_cutoff_date",
                   "train_last_cutoff_date", "holdout_cutoff_date"):  # fmt: skip
        frame[column] = pd.to_datetime(frame[column]).dt.date
    # numbers stay numbers without a model or a holdout (an all-null column has no type)
    numbers = ("holdout_base_rate", "holdout_auc", "holdout_brier_score")
    return frame.astype({column: "float64" for column in numbers}), model


EVALUATION_TEXT_COLUMNS = (
    "model_name", "calibration_bins", "model_not_trained_reason", "model_coefficients",
    "library", "library_version",
)  # fmt: skip


def reusable_evaluation(previous: pd.DataFrame, settings: ChurnSettings) -> pd.DataFrame | None:
    """The churn_model_evaluation row of the latest earlier run, restamped for settings.as_of,
    when its model may be reused: trained fewer than retrain_after_days days before as_of, with
    the same label days, training cutoffs, calibration bins and library version. A run that
    could not train a model is never reused. None means: train again.

    `previous`: rows of earlier as_of dates (trained_as_of_date null in rows written before
    that column existed: those were trained on their own date)."""

    if settings.retrain_after_days <= 0:
        return None
    latest = _latest_before(
        previous,
        settings.as_of,
        "trained_as_of_date",
        ["train_first_cutoff_date", "train_last_cutoff_date", "holdout_cutoff_date"],
    )
    if latest is None:
        return None
    row = latest.iloc[0]  # one row per as_of_date
    trained = row["trained_as_of_date"]
    split = churn.time_split(trained, settings.label_days, settings.train_snapshots)
    reasons = [
        (settings.as_of - trained).days >= settings.retrain_after_days
        and f"trained {(settings.as_of - trained).days} days ago",
        not bool(row["is_model_trained"]) and "no model was trained",
        int(row["label_days"]) != settings.label_days and "label days changed",
        (row["train_first_cutoff_date"], row["train_last_cutoff_date"])
        != (split.train[0], split.train[-1])
        and "training cutoffs changed",
        row["library_version"] != _version("scikit-learn") and "library version changed",
    ]
    reasons = [r for r in reasons if r]
    if reasons:
        log.info("retraining the churn model for %s: %s", settings.as_of, "; ".join(reasons))
        return None
    log.info("reusing the churn model trained for %s on %s", trained, settings.as_of)
    latest["as_of_date"] = settings.as_of
    latest["trained_as_of_date"] = trained
    return latest.reset_index(drop=True)


def evaluation_for(evaluations: pd.DataFrame, as_of: date) -> pd.Series:
    """The churn_model_evaluation row of as_of (the model customer_churn_risk applies)."""
    import pandas as pd

    rows = evaluations[pd.to_datetime(evaluations["as_of_date"]).dt.date == as_of]
    if len(rows) != 1:
        raise LookupError(f"churn_model_evaluation has {len(rows)} rows for {as_of}")
    return rows.iloc[0]


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


# per customer of customer_360 (ordered by id): its LTV figures and the scored subscription
# (`{riskiest}`, the name of the registered frame), joined where the customers are
_CHURN_RISK_SQL = """
select customers.customer_id, ltv.order_count, ltv.probability_alive, ltv.last_ordered_at,
    riskiest.* exclude (customer_id),
from (select distinct customer_id from ({customers})) as customers
left join ({ltv}) as ltv using (customer_id)
left join {riskiest} as riskiest using (customer_id)
order by customers.customer_id
"""


def customer_churn_risk(
    session,
    customers,
    ltv,
    sources: churn.ChurnSources,
    model: churn.ChurnModel | None,
    settings: ChurnSettings,
) -> pd.DataFrame:
    """One row per customer: the subscription model for customers with an active subscription
    (their riskiest active one), 1 - probability alive (BG/NBD) for other buyers, nothing for
    customers who never bought. Without a subscription model (too little history to train
    one), subscribers who bought are scored by BG/NBD like other buyers. A buyer without a
    BG/NBD probability alive (no BG/NBD model fitted) gets the recency rule: days since the
    last order / churned_days, at most 1.

    `customers` and `ltv` are the DuckDB relations of customer_360 and customer_ltv, `session`
    their connection: the subscriptions are scored in pandas and joined to every customer
    there."""
    scored = churn.snapshot(sources, settings.as_of, None)
    if model is None:
        scored = scored.iloc[0:0]
    scored["churn_probability"] = model.predict(scored) if model is not None else []
    feature_columns = ["subscription_id", "tenure_days", *churn.FEATURES]
    feature_columns.remove("log_tenure_days")
    riskiest = scored.sort_values(
        ["churn_probability", "subscription_id"], ascending=[False, True]
    ).drop_duplicates("customer_id")[["customer_id", *feature_columns, "churn_probability"]]
    name = "churn_risk_riskiest_subscriptions"
    with registered(session, name, riskiest):
        frame = session.sql(
            _CHURN_RISK_SQL.format(
                customers=customers.sql_query(), ltv=ltv.sql_query(), riskiest=name
            )
        ).df()
    is_subscriber = frame["subscription_id"].notna().to_numpy()
    is_buyer = (frame["order_count"].fillna(0) > 0).to_numpy()
    has_bg_nbd = is_buyer & frame["probability_alive"].notna().to_numpy()
    model_name = np.select(
        [is_subscriber, has_bg_nbd, is_buyer], ["subscription", "bg_nbd", "recency"], ""
    )
    frame["churn_model"] = np.where(model_name == "", None, model_name).astype(object)
    frame["churn_probability"] = np.select(
        [is_subscriber, has_bg_nbd, is_buyer],
        [
            frame["churn_probability"].astype(float),
            1.0 - frame["probability_alive"].astype(float),
            recency_churn_probability(frame["last_ordered_at"], settings),
        ],
        np.nan,
    )
    frame["churn_band"] = churn.churn_bands(
        frame["churn_probability"], settings.band_low, settings.band_medium
    )
    frame = frame.rename(columns={"tenure_days": "subscription_tenure_days",
                                  "monthly_price": "subscription_monthly_price"})  # fmt: skip
    frame["subscription_id"] = frame["subscription_id"].astype("Int64")
    frame["as_of_date"] = settings.as_of
    return frame[CHURN_RISK_COLUMNS]


def recency_churn_probability(last_ordered_at: pd.Series, settings: ChurnSettings) -> np.ndarray:
    """The churn probability of buyers no model scores: days from the last order to as_of
    over churned_days, at most 1 (a buyer churned_days without an order is churned, as in the
    lifecycle stages); NaN without an order."""
    import pandas as pd

    times = pd.to_datetime(last_ordered_at)
    if times.dt.tz is not None:
        times = times.dt.tz_convert("UTC").dt.tz_localize(None)
    days = (pd.Timestamp(settings.as_of) - times).dt.days
    return np.clip(days.to_numpy(dtype=float) / max(settings.churned_days, 1), 0.0, 1.0)


CHURN_RISK_COLUMNS = [
    "customer_id",
    "churn_model",
    "churn_probability",
    "churn_band",
    "subscription_id",
    "subscription_tenure_days",
    "subscription_monthly_price",
    "order_count_90d",
    "days_since_last_order",
    "web_session_count_30d",
    "email_open_count_90d",
    "email_click_count_90d",
    "support_ticket_count_180d",
    "low_csat_ticket_count",
    "avg_csat_score",
    "as_of_date",
]
