"""The frames behind the LTV and churn marts, from the warehouse tables as pandas frames.

The dbt Python models (`dbt_project/models/marts/ltv/`, `.../churn/`) only read their refs,
call these functions and return the result, so the logic is tested without dbt.
"""

from __future__ import annotations

import logging
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
    penalizer_coef: float = 0.001
    # the fits of an earlier run are reused while younger than this many days and while the
    # number of buyers has changed by at most refit_after_growth (0: refit on every run)
    refit_after_days: int = 7
    refit_after_growth: float = 0.1

    @property
    def calibration_end(self) -> date:
        """The last whole day before as_of: orders before as_of are the calibration period."""
        return self.as_of - timedelta(days=1)


def as_arrow(frame: pd.DataFrame):
    """The frame as an Arrow table, so that date columns land as DATE in DuckDB (a pandas
    column of dates would become a timestamp)."""
    import pyarrow as pa

    return pa.Table.from_pandas(frame, preserve_index=False)


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


def model_fits(session, orders, settings: LtvSettings) -> pd.DataFrame:
    """Fit BG/NBD and Gamma-Gamma on the buyers as of the run: one row per model. `orders` is
    the DuckDB relation of int_orders__priced, `session` its connection."""
    import pandas as pd

    transactions = buyer_transactions_sql(orders.sql_query(), settings.as_of)
    summary = session.sql(_summary_of_buyers_sql(transactions, settings)).df()
    _, bg_nbd = models.fit_bg_nbd(summary, settings.penalizer_coef)
    _, gamma_gamma = models.fit_gamma_gamma(summary, settings.penalizer_coef)
    rows = []
    for fit in (bg_nbd, gamma_gamma):
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
            is_converged=fit.converged,
            penalizer_coef=fit.penalizer_coef,
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
    return frame


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
    reused: fitted fewer than refit_after_days days before as_of, both models converged, with
    the same time unit, penalizer and library version, and a buyer count within
    refit_after_growth of the one fitted. None means: fit again.

    `previous`: ltv_model_fits rows of earlier as_of dates (fitted_as_of_date null in rows
    written before that column existed: those were fitted on their own date)."""

    if settings.refit_after_days <= 0:
        return None
    latest = _latest_before(previous, settings.as_of, "fitted_as_of_date", ["calibration_end_date"])
    if latest is None or sorted(latest["model_name"]) != ["bg_nbd", "gamma_gamma"]:
        return None
    fitted = latest["fitted_as_of_date"].iloc[0]
    bg_nbd = latest[latest["model_name"] == "bg_nbd"].iloc[0]
    library_version = models.fit_library_version()
    reasons = [
        (settings.as_of - fitted).days >= settings.refit_after_days
        and f"fitted {(settings.as_of - fitted).days} days ago",
        (latest["fitted_as_of_date"] != fitted).any() and "models fitted on different dates",
        not latest["is_converged"].astype(bool).all() and "a fit did not converge",
        (latest["time_unit_days"].astype(float) != float(settings.time_unit_days)).any()
        and "time unit changed",
        (latest["penalizer_coef"].astype(float) != float(settings.penalizer_coef)).any()
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
    return latest.sort_values("model_name").reset_index(drop=True)


def params_of(fits: pd.DataFrame, model_name: str, as_of: date) -> dict[str, float]:
    """The parameters of one model fitted for as_of, from the ltv_model_fits rows."""
    import pandas as pd

    rows = fits[
        (fits["model_name"] == model_name) & (pd.to_datetime(fits["as_of_date"]).dt.date == as_of)
    ]
    if len(rows) != 1:
        raise LookupError(f"ltv_model_fits has {len(rows)} {model_name} rows for {as_of}")
    names = models.BG_NBD_PARAMS if model_name == "bg_nbd" else models.GAMMA_GAMMA_PARAMS
    return {name: float(rows.iloc[0][FIT_PARAM_COLUMNS[name]]) for name in names}


# per customer of customer_360 (ordered by id): the order history and the summary the
# predictions take, computed where the orders are; `{buyers}` is the SQL of the buyers'
# transactions, `{summary}` the SQL of the summary of `buyers`
_LTV_INPUTS_SQL = """
with buyers as ({buyers}),
history as (
    select customer_id,
        count(*) as order_count,
        sum(revenue) as historical_revenue,
        sum(gross_margin) as historical_gross_margin,
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


def customer_ltv(
    session, customers, orders, fits: pd.DataFrame, settings: LtvSettings
) -> pd.DataFrame:
    """One row per customer: history, BG/NBD + Gamma-Gamma predictions with the parameters
    fitted for as_of, revenue and gross-margin LTV. Customers without a completed order keep
    zeros for their history and nulls for every model figure.

    `customers` and `orders` are the DuckDB relations of customer_360 and int_orders__priced,
    `session` their connection: the history and the summary are computed there, and only the
    per-customer figures come into pandas."""
    import pandas as pd

    frame = session.sql(
        _LTV_INPUTS_SQL.format(
            buyers=buyer_transactions_sql(orders.sql_query(), settings.as_of),
            customers=customers.sql_query(),
            summary=_summary_of_buyers_sql("from buyers", settings),
        )
    ).df()
    bg_nbd = models.bg_nbd_from_params(params_of(fits, "bg_nbd", settings.as_of))
    gamma_gamma = models.gamma_gamma_from_params(params_of(fits, "gamma_gamma", settings.as_of))
    buyer = frame["order_count"].notna().to_numpy()
    predicted = models.predict_customer_value(
        frame.loc[buyer, ["frequency", "recency", "T", "monetary_value"]],
        bg_nbd,
        gamma_gamma,
        time_unit_days=settings.time_unit_days,
        horizon_months=settings.horizon_months,
        annual_discount_rate=settings.annual_discount_rate,
    )
    frame = frame.join(predicted).rename(
        columns={"T": "customer_age", "clv": "predicted_revenue_ltv"}
    )
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
    return frame[LTV_COLUMNS]


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
    "applied_margin_rate",
    "margin_rate_basis",
    "predicted_gross_margin_ltv",
    "time_unit_days",
    "horizon_months",
    "as_of_date",
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
    (is_model_trained false, no AUC, no coefficients) and no subscription is scored."""
    import json

    import pandas as pd

    split = churn.time_split(settings.as_of, settings.label_days, settings.train_snapshots)
    train = pd.concat(
        [churn.snapshot(sources, cutoff, split.label_days) for cutoff in split.train],
        ignore_index=True,
    )
    holdout = churn.snapshot(sources, split.holdout, split.label_days)
    try:
        model = churn.fit_churn_model(train)
    except churn.NotEnoughTrainingData as error:
        log.warning("no subscription churn model for %s: %s", settings.as_of, error)
        model = None
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
        "model_coefficients": model.to_json() if model is not None else None,
        "library": "scikit-learn",
        "library_version": _version("scikit-learn"),
    }
    frame = pd.DataFrame([row])
    for column in ("as_of_date", "trained_as_of_date", "train_first_cutoff_date",
                   "train_last_cutoff_date", "holdout_cutoff_date"):  # fmt: skip
        frame[column] = pd.to_datetime(frame[column]).dt.date
    return frame, model


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
select customers.customer_id, ltv.order_count, ltv.probability_alive,
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
    one), subscribers who bought are scored by BG/NBD like other buyers.

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
    frame["churn_model"] = np.where(
        is_subscriber, "subscription", np.where(is_buyer, "bg_nbd", None)
    )
    frame["churn_probability"] = np.where(
        is_subscriber,
        frame["churn_probability"],
        np.where(is_buyer, 1.0 - frame["probability_alive"], np.nan),
    )
    frame["churn_band"] = churn.churn_bands(
        frame["churn_probability"], settings.band_low, settings.band_medium
    )
    frame = frame.rename(columns={"tenure_days": "subscription_tenure_days",
                                  "monthly_price": "subscription_monthly_price"})  # fmt: skip
    frame["subscription_id"] = frame["subscription_id"].astype("Int64")
    frame["as_of_date"] = settings.as_of
    return frame[CHURN_RISK_COLUMNS]


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
