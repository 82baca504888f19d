"""The frames behind customer_ltv and customer_churn_risk, on small hand-made inputs."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import duckdb
import numpy as np
import pandas as pd
import pytest

from crm360.ltv import churn, marts

AS_OF = date(2026, 11, 1)
SETTINGS = marts.LtvSettings(as_of=AS_OF, horizon_months=12, annual_discount_rate=0.1)
T = pd.Timestamp


def orders_of(rows) -> pd.DataFrame:
    return pd.DataFrame(
        rows, columns=["customer_id", "ordered_at", "is_completed", "revenue", "gross_margin"]
    )


ORDERS = orders_of([
    ("buyer", T("2026-01-10"), True, 1000, 400),
    ("buyer", T("2026-03-10"), True, 3000, 1200),
    ("buyer", T("2026-04-10"), False, 9999, 9999),  # cancelled: not counted
    ("buyer", T("2026-11-01 00:00"), True, 9999, 9999),  # on as_of: after the period
    ("free", T("2026-06-01"), True, 0, 0),  # a buyer without revenue
    (None, T("2026-06-01"), True, 500, 100),  # no customer: dropped
])  # fmt: skip
CUSTOMERS = pd.DataFrame({"customer_id": ["buyer", "free", "prospect"]})
FITS = pd.DataFrame([
    {"model_name": "bg_nbd", "as_of_date": AS_OF, "param_r": 0.243, "param_alpha": 4.414,
     "param_a": 0.793, "param_b": 2.426, "param_p": None, "param_q": None, "param_v": None},
    {"model_name": "gamma_gamma", "as_of_date": AS_OF, "param_r": None, "param_alpha": None,
     "param_a": None, "param_b": None, "param_p": 6.25, "param_q": 3.74, "param_v": 15.44},
    {"model_name": "bg_nbd", "as_of_date": date(2026, 10, 1), "param_r": 9.0,
     "param_alpha": 9.0, "param_a": 9.0, "param_b": 9.0, "param_p": None, "param_q": None,
     "param_v": None},
])  # fmt: skip


def customer_ltv(customers, orders, fits, settings) -> pd.DataFrame:
    """marts.customer_ltv on frames: the customers and orders as DuckDB relations, as the dbt
    model passes its refs."""
    with duckdb.connect() as con:
        con.register("customers", customers)
        con.register("orders", orders)
        return marts.customer_ltv(con, con.table("customers"), con.table("orders"), fits, settings)


def customer_churn_risk(customers, ltv, sources, model, settings) -> pd.DataFrame:
    """marts.customer_churn_risk on frames, the customers and LTV rows as DuckDB relations."""
    with duckdb.connect() as con:
        con.register("customers", customers)
        con.register("ltv", ltv)
        return marts.customer_churn_risk(
            con, con.table("customers"), con.table("ltv"), sources, model, settings
        )


def test_customer_ltv_history_and_predictions():
    frame = customer_ltv(CUSTOMERS, ORDERS, FITS, SETTINGS).set_index("customer_id")
    assert list(frame.index) == ["buyer", "free", "prospect"]
    buyer = frame.loc["buyer"]
    assert buyer["order_count"] == 2
    assert buyer["historical_revenue"] == 4000
    assert buyer["historical_gross_margin"] == 1600
    assert buyer["gross_margin_rate"] == pytest.approx(0.4)
    assert buyer["frequency"] == 1
    assert buyer["recency"] == pytest.approx(59 / 7)
    assert buyer["customer_age"] == pytest.approx((date(2026, 10, 31) - date(2026, 1, 10)).days / 7)
    assert 0 < buyer["probability_alive"] <= 1
    assert buyer["predicted_revenue_ltv"] > 0
    assert buyer["predicted_gross_margin_ltv"] == pytest.approx(
        0.4 * buyer["predicted_revenue_ltv"], abs=0.01
    )
    assert buyer["margin_rate_basis"] == "customer"
    # no revenue of their own: the overall rate (1600 / 4000) applies
    assert frame.loc["free", "margin_rate_basis"] == "overall"
    assert frame.loc["free", "applied_margin_rate"] == pytest.approx(0.4)
    prospect = frame.loc["prospect"]
    assert (prospect["order_count"], prospect["historical_revenue"]) == (0, 0)
    for column in ("frequency", "probability_alive", "predicted_revenue_ltv",
                   "predicted_gross_margin_ltv", "margin_rate_basis"):  # fmt: skip
        assert pd.isna(prospect[column]), column
    assert (frame["as_of_date"] == AS_OF).all()


def test_customer_ltv_needs_the_fit_of_its_date():
    settings = marts.LtvSettings(as_of=date(2026, 12, 1))
    with pytest.raises(LookupError, match="0 bg_nbd rows for 2026-12-01"):
        customer_ltv(CUSTOMERS, ORDERS, FITS, settings)


def test_parse_as_of():
    assert marts.parse_as_of("2026-11-01") == AS_OF
    assert marts.parse_as_of(AS_OF) == AS_OF
    assert marts.parse_as_of("None") == date.today()


def test_churn_risk_picks_the_model_per_customer():
    subscriptions = pd.DataFrame(
        [(1, "subscriber", T("2026-01-01"), None, "active", 1980),
         (2, "subscriber", T("2026-01-01"), None, "active", 3980),
         (3, "lapsed", T("2025-01-01"), T("2026-02-01"), "cancelled", 2980)],
        columns=["subscription_id", "customer_id", "started_at", "cancelled_at",
                 "subscription_status", "monthly_price"],
    )  # fmt: skip
    empty = {"orders": ["customer_id", "ordered_at"],
             "web_events": ["customer_id", "anonymous_id", "occurred_at"],
             "email_events": ["customer_id", "campaign_id", "event_type", "occurred_at"],
             "tickets": ["customer_id", "created_at", "resolved_at", "csat_score"]}  # fmt: skip
    sources = churn.ChurnSources(
        subscriptions=subscriptions, **{k: pd.DataFrame(columns=v) for k, v in empty.items()}
    )
    names = churn.FEATURES
    model = churn.ChurnModel(
        intercept=0.0,
        coefficients={n: (1.0 if n == "monthly_price" else 0.0) for n in names},
        means={n: (2980.0 if n == "monthly_price" else 0.0) for n in names},
        scales={n: (1000.0 if n == "monthly_price" else 1.0) for n in names},
        fill_values={n: 0.0 for n in names},
    )
    customers = pd.DataFrame({"customer_id": ["subscriber", "lapsed", "prospect"]})
    ltv = pd.DataFrame({"customer_id": ["subscriber", "lapsed", "prospect"],
                        "order_count": [3, 2, 0], "probability_alive": [0.9, 0.25, None],
                        "last_ordered_at": [T("2026-10-01"), T("2026-02-01"), None]})  # fmt: skip
    frame = customer_churn_risk(
        customers, ltv, sources, model, marts.ChurnSettings(as_of=AS_OF)
    ).set_index("customer_id")
    subscriber = frame.loc["subscriber"]
    assert subscriber["churn_model"] == "subscription"
    assert subscriber["subscription_id"] == 2  # the riskiest (dearer) one
    assert subscriber["churn_probability"] == pytest.approx(1 / (1 + np.exp(-1.0)))
    assert subscriber["churn_band"] == "high"
    lapsed = frame.loc["lapsed"]
    assert (lapsed["churn_model"], lapsed["churn_band"]) == ("bg_nbd", "high")
    assert lapsed["churn_probability"] == pytest.approx(0.75)
    assert pd.isna(lapsed["subscription_id"])
    prospect = frame.loc["prospect"]
    assert pd.isna(prospect["churn_model"]) and pd.isna(prospect["churn_probability"])
    assert pd.isna(prospect["churn_band"])


def test_without_churn_history_no_model_is_kept_and_subscribers_fall_back_to_bg_nbd():
    subscriptions = pd.DataFrame(
        [(1, "subscriber", T("2026-10-01"), None, "active", 1980)],
        columns=["subscription_id", "customer_id", "started_at", "cancelled_at",
                 "subscription_status", "monthly_price"],
    )  # fmt: skip
    empty = {"orders": ["customer_id", "ordered_at"],
             "web_events": ["customer_id", "anonymous_id", "occurred_at"],
             "email_events": ["customer_id", "campaign_id", "event_type", "occurred_at"],
             "tickets": ["customer_id", "created_at", "resolved_at", "csat_score"]}  # fmt: skip
    sources = churn.ChurnSources(
        subscriptions=subscriptions, **{k: pd.DataFrame(columns=v) for k, v in empty.items()}
    )
    settings = marts.ChurnSettings(as_of=AS_OF)
    evaluation, model = marts.churn_model_evaluation(sources, settings)
    row = evaluation.iloc[0]
    assert model is None
    assert not row["is_model_trained"]
    assert row["model_coefficients"] is None and pd.isna(row["holdout_auc"])
    assert row["model_not_trained_reason"] == (
        "training snapshots need both cancelled and kept subscriptions; got 0 rows, 0 cancelled"
    )
    assert (row["train_row_count"], row["holdout_row_count"]) == (0, 0)
    assert row["calibration_bins"] == "[]"
    # the scores of the evaluation stay numbers without a model (an all-null column has no type)
    assert evaluation["holdout_auc"].dtype == "float64"
    ltv = pd.DataFrame({"customer_id": ["subscriber"], "order_count": [2],
                        "probability_alive": [0.8], "last_ordered_at": [T("2026-10-01")]})  # fmt: skip
    risk = customer_churn_risk(ltv[["customer_id"]], ltv, sources, None, settings)
    assert risk.loc[0, "churn_model"] == "bg_nbd"
    assert risk.loc[0, "churn_probability"] == pytest.approx(0.2)
    # no ticket at all: the CSAT columns are still numbers (a table typed NULL breaks readers)
    with duckdb.connect() as con:
        types = {row[0]: row[1] for row in con.execute("describe select * from risk").fetchall()}
    assert types["avg_csat_score"] == "DOUBLE"
    assert types["low_csat_ticket_count"] == "DOUBLE"
    assert np.isnan(risk.loc[0, "avg_csat_score"])


def test_churn_logs_read_in_duckdb_give_the_features_of_the_whole_logs():
    """read_churn_sources keeps only subscribers' rows and only session-starting web events;
    every snapshot's features equal those computed from the whole logs in pandas."""
    import duckdb

    rng = np.random.default_rng(7)
    start = T("2025-01-01")
    people = [f"cus_{i:02d}" for i in range(40)]
    linked = pd.DataFrame(
        [(c, "shop", str(i)) for i, c in enumerate(people)]
        + [(c, "web", f"dev_{i}_{d}") for i, c in enumerate(people) for d in range(2)]
        + [(c, "crm", f"C{i}") for i, c in enumerate(people)]
        + [(c, "support", f"T{i}_{k}") for i, c in enumerate(people) for k in range(3)],
        columns=["customer_id", "source", "source_key"],
    )
    minutes = lambda n: pd.to_timedelta(n, unit="min")  # noqa: E731
    subscriptions = pd.DataFrame({
        "subscription_id": range(1, 31),
        "shop_customer_id": rng.integers(0, 45, 30),  # 40-44: shop accounts never linked
        "subscription_status": rng.choice(["active", "paused", "cancelled"], 30),
        "monthly_price": rng.choice([980, 1980, 2980], 30),
        "started_at": start + minutes(rng.integers(0, 400 * 1440, 30)),
    })  # fmt: skip
    cancelled = start + minutes(rng.integers(200 * 1440, 700 * 1440, 30))
    subscriptions["cancelled_at"] = cancelled.where(rng.random(30) < 0.5)
    # gaps of exactly 30 minutes (the same session), ties and long pauses
    gaps = rng.choice([0, 5, 30, 31, 600, 20000], 4000)
    web = pd.DataFrame({"anonymous_id": rng.choice([f"dev_{i}_{d}" for i in range(45)
                                                    for d in range(2)], 4000)})  # fmt: skip
    web["occurred_at"] = start + minutes(np.cumsum(gaps) % (680 * 1440))
    email = pd.DataFrame({
        "contact_id": rng.choice([f"C{i}" for i in range(45)], 3000),
        "campaign_id": rng.choice([f"K{k}" for k in range(30)], 3000),
        "event_type": rng.choice(["delivered", "open", "click"], 3000),
        "occurred_at": start + minutes(rng.integers(0, 680 * 1440, 3000)),
    })  # fmt: skip
    tickets = pd.DataFrame({
        "ticket_id": [f"T{i}_{k}" for i in range(45) for k in range(3)],
        "created_at": start + minutes(rng.integers(0, 680 * 1440, 135)),
        "csat_score": rng.choice([1.0, 2.0, 4.0, 5.0, np.nan], 135),
    })  # fmt: skip
    tickets["resolved_at"] = tickets["created_at"] + minutes(rng.integers(0, 20000, 135))
    orders = pd.DataFrame({
        "customer_id": rng.choice([*people, None], 800),
        "ordered_at": start + minutes(rng.integers(0, 680 * 1440, 800)),
        "is_completed": rng.choice([True, False, None], 800),
    })  # fmt: skip
    con = duckdb.connect()
    frames = dict(linked=linked, subscriptions=subscriptions, orders=orders, web_events=web,
                  email_events=email, tickets=tickets)  # fmt: skip
    for name, frame in frames.items():
        con.register(f"{name}_frame", frame)
        con.execute(f"create table {name} as select * from {name}_frame")
    read = marts.read_churn_sources(con, **{name: con.table(name) for name in frames})

    def customer_of(frame, key, source):
        keys = linked[linked["source"] == source].set_index("source_key")["customer_id"]
        frame = frame.assign(customer_id=frame[key].astype(str).map(keys))
        return frame[frame["customer_id"].notna()]

    whole = churn.ChurnSources(
        subscriptions=customer_of(subscriptions, "shop_customer_id", "shop"),
        orders=orders[orders["is_completed"].fillna(False).astype(bool)
                      & orders["customer_id"].notna()],
        web_events=customer_of(web, "anonymous_id", "web"),
        email_events=customer_of(email[email["event_type"] != "delivered"], "contact_id", "crm"),
        tickets=customer_of(tickets, "ticket_id", "support"),
    )  # fmt: skip
    subscribers = set(read.subscriptions["customer_id"])
    assert subscribers == set(whole.subscriptions["customer_id"])
    assert len(read.web_events) < len(whole.web_events) / 2  # only session starts, subscribers
    assert set(read.web_events["customer_id"]) <= subscribers
    split = churn.time_split(AS_OF, 90, 4)
    compared = 0
    for cutoff in (*split.train, split.holdout, split.score):
        label_days = None if cutoff == split.score else 90
        expected = churn.snapshot(whole, cutoff, label_days)
        got = churn.snapshot(read, cutoff, label_days)
        pd.testing.assert_frame_equal(got, expected, check_dtype=False)
        compared += len(got)
    assert compared > 20
    assert read.web_sessions["started_at"].notna().all()
    # the sessions read with the rows are the ones pandas finds in the whole log, subscribers'
    key = ["customer_id", "started_at"]
    found = whole.web_sessions[whole.web_sessions["customer_id"].isin(subscribers)]
    pd.testing.assert_frame_equal(
        read.web_sessions.sort_values(key).reset_index(drop=True),
        found.sort_values(key).reset_index(drop=True),
    )


def _stored(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as it comes back from the warehouse: dates as timestamps."""
    frame = frame.copy()
    for column in frame.columns:
        if column.endswith("_date"):
            frame[column] = pd.to_datetime(frame[column])
    return frame


def _fits_of(day: date, buyers: int = 1000, **changes) -> pd.DataFrame:
    rows = []
    for model_name in ("bg_nbd", "gamma_gamma"):
        rows.append({
            "model_fit_id": f"{day}:{model_name}", "as_of_date": day, "fitted_as_of_date": day,
            "model_name": model_name, "param_r": 0.5, "param_alpha": 4.0, "param_a": 0.8,
            "param_b": 2.4, "param_p": None, "param_q": None, "param_v": None,
            "customer_count": buyers if model_name == "bg_nbd" else buyers // 3,
            "is_fitted": True, "is_converged": True, "penalizer_coef": 0.0,
            "calibration_end_date": day - pd.Timedelta(days=1), "time_unit_days": 7.0,
            "horizon_months": 12, "annual_discount_rate": 0.1, "library": "lifetimes",
            "library_version": marts.models.fit_library_version(), **changes,
        })  # fmt: skip
    return _stored(pd.DataFrame(rows))


def test_ltv_fits_are_reused_until_they_are_too_old_or_the_buyers_changed():
    day1 = date(2026, 11, 1)
    previous = _fits_of(day1)
    settings = marts.LtvSettings(as_of=date(2026, 11, 7), horizon_months=6)
    reused = marts.reusable_fits(previous, 1050, settings)
    assert list(reused["model_fit_id"]) == ["2026-11-07:bg_nbd", "2026-11-07:gamma_gamma"]
    assert set(reused["as_of_date"]) == {date(2026, 11, 7)}
    assert set(reused["fitted_as_of_date"]) == {day1}
    assert set(reused["horizon_months"]) == {6}  # the run's own prediction settings
    assert list(reused["param_r"]) == [0.5, 0.5]
    # the reused rows are reused again, still as fitted on day 1
    again = marts.reusable_fits(_stored(reused), 1050, replace(settings, as_of=date(2026, 11, 8)))
    assert again is None  # 7 days after the fit
    again = marts.reusable_fits(_stored(reused), 1050, replace(settings, as_of=date(2026, 11, 7)))
    assert again is None  # only earlier dates are candidates
    assert marts.reusable_fits(previous, 1101, settings) is None  # buyers +10.1%
    assert marts.reusable_fits(previous, 899, settings) is None  # -10.1%
    assert marts.reusable_fits(previous, 900, settings) is not None  # -10%: still reused
    assert marts.reusable_fits(previous, 1050, replace(settings, refit_after_days=0)) is None
    assert marts.reusable_fits(previous, 1050, replace(settings, penalizer_coef=0.01)) is None
    assert marts.reusable_fits(previous, 1050, replace(settings, time_unit_days=1.0)) is None
    # a fit redone at the retry penalty is what these settings give: reused...
    retried = _fits_of(day1, is_converged=False, penalizer_coef=0.001)
    assert marts.reusable_fits(retried, 1050, settings) is not None
    # ... unless the penalizer asked for changed (the retry of 0.01 is 0.1)
    assert marts.reusable_fits(retried, 1050, replace(settings, penalizer_coef=0.01)) is None
    # a model that could not be fitted is tried again on the next run
    unfitted = _fits_of(day1, is_fitted=False, is_converged=False)
    assert marts.reusable_fits(unfitted, 1050, settings) is None
    assert marts.reusable_fits(_fits_of(day1, library_version="0.0"), 1050, settings) is None
    assert marts.reusable_fits(previous.iloc[:1], 1050, settings) is None  # one model missing
    assert marts.reusable_fits(previous.iloc[:0], 1050, settings) is None  # first run
    # rows written before fitted_as_of_date existed were fitted on their own date
    legacy = previous.drop(columns=["fitted_as_of_date", "is_fitted"])
    assert set(marts.reusable_fits(legacy, 1000, settings)["fitted_as_of_date"]) == {day1}
    # ... and is_fitted is null in rows written before it existed: they were fitted
    assert marts.reusable_fits(previous.assign(is_fitted=None), 1000, settings) is not None


def test_customer_ltv_predicts_with_reused_fits_as_with_the_fits_they_copy():
    previous = FITS[FITS["as_of_date"] == AS_OF].assign(
        model_fit_id=lambda f: str(AS_OF) + ":" + f["model_name"], fitted_as_of_date=AS_OF,
        customer_count=[2, 1], is_converged=True, penalizer_coef=0.0, time_unit_days=7.0,
        library_version=marts.models.fit_library_version(),
    )  # fmt: skip
    later = replace(SETTINGS, as_of=date(2026, 11, 3))
    reused = marts.reusable_fits(_stored(previous), 2, later)
    relabelled = previous.assign(as_of_date=later.as_of)
    assert_frame_equal = pd.testing.assert_frame_equal
    assert_frame_equal(
        customer_ltv(CUSTOMERS, ORDERS, reused, later),
        customer_ltv(CUSTOMERS, ORDERS, relabelled, later),
    )


def _evaluation_of(day: date, **changes) -> pd.DataFrame:
    split = churn.time_split(day, 90, 4)
    row = {
        "as_of_date": day, "trained_as_of_date": day,
        "model_name": "subscription_logistic_regression", "label_days": 90,
        "train_first_cutoff_date": split.train[0], "train_last_cutoff_date": split.train[-1],
        "holdout_cutoff_date": split.holdout, "train_row_count": 400,
        "train_cancelled_count": 40, "holdout_row_count": 100, "holdout_cancelled_count": 9,
        "holdout_base_rate": 0.09, "holdout_auc": 0.71, "holdout_brier_score": 0.08,
        "calibration_bins": "[]", "is_model_trained": True, "model_coefficients": "{}",
        "library": "scikit-learn", "library_version": marts._version("scikit-learn"),
        **changes,
    }  # fmt: skip
    return _stored(pd.DataFrame([row]))


def test_the_churn_model_is_reused_until_it_is_too_old_or_its_split_changed():
    day1 = date(2026, 11, 1)
    settings = marts.ChurnSettings(as_of=date(2026, 11, 5))
    reused = marts.reusable_evaluation(_evaluation_of(day1), settings)
    assert len(reused) == 1
    row = reused.iloc[0]
    assert (row["as_of_date"], row["trained_as_of_date"]) == (settings.as_of, day1)
    assert (row["holdout_auc"], row["model_coefficients"]) == (0.71, "{}")
    assert row["holdout_cutoff_date"] == day1 - pd.Timedelta(days=90)
    two = pd.concat([_evaluation_of(day1), _stored(reused)])
    assert marts.reusable_evaluation(two, replace(settings, as_of=date(2026, 11, 6))).iloc[0][
        "trained_as_of_date"] == day1  # fmt: skip
    assert marts.reusable_evaluation(two, replace(settings, as_of=date(2026, 11, 8))) is None
    assert marts.reusable_evaluation(_evaluation_of(day1), replace(settings, label_days=60)) is None
    assert (
        marts.reusable_evaluation(_evaluation_of(day1), replace(settings, train_snapshots=3))
        is None
    )
    assert (
        marts.reusable_evaluation(_evaluation_of(day1), replace(settings, retrain_after_days=0))
        is None
    )
    untrained = _evaluation_of(day1, is_model_trained=False, model_coefficients=None)
    assert marts.reusable_evaluation(untrained, settings) is None
    legacy = _evaluation_of(day1).drop(columns="trained_as_of_date")
    assert marts.reusable_evaluation(legacy, settings).iloc[0]["trained_as_of_date"] == day1


# --- when the models cannot give an LTV ----------------------------------------------------

NEW_BUYER = orders_of([("new", T("2026-10-01"), True, 800, 200)])
# the historical LTV's discount: the mean of 1 / (1 + monthly rate)^month over the 12 months,
# the monthly rate compounding to 10% a year
MEAN_DISCOUNT = np.mean([(1.1 ** (1 / 12)) ** -month for month in range(1, 13)])


def model_fits(orders: pd.DataFrame, settings: marts.LtvSettings) -> pd.DataFrame:
    """marts.model_fits on a frame of orders, as a DuckDB relation like the dbt model's ref."""
    with duckdb.connect() as con:
        con.register("orders", orders)
        return marts.model_fits(con, con.table("orders"), settings)


def test_with_too_few_buyers_no_model_is_fitted_and_the_fits_say_why():
    fits = model_fits(ORDERS, SETTINGS).set_index("model_name")
    assert list(fits.index) == ["bg_nbd", "gamma_gamma"]
    assert not fits["is_fitted"].any() and not fits["is_converged"].any()
    assert fits.loc["bg_nbd", "fit_note"] == "not fitted: BG/NBD needs at least 5 buyers; found 2"
    assert fits.loc["gamma_gamma", "fit_note"] == (
        "not fitted: Gamma-Gamma needs at least 4 repeat buyers with a positive monetary value; "
        "found 1"
    )
    assert list(fits["customer_count"]) == [2, 1]
    assert list(fits["penalizer_coef"]) == [0.0, 0.0]
    params = list(marts.FIT_PARAM_COLUMNS.values())
    assert fits[[*params, "log_likelihood"]].isna().all().all()
    # the parameters stay numbers: the incremental table keeps its column types
    assert (fits[params].dtypes == "float64").all()


def test_without_fitted_models_buyers_get_their_historical_ltv_with_the_reason():
    orders = pd.concat([ORDERS, NEW_BUYER], ignore_index=True)
    customers = pd.DataFrame({"customer_id": ["buyer", "free", "new", "prospect"]})
    fits = model_fits(orders, SETTINGS)
    frame = customer_ltv(customers, orders, fits, SETTINGS).set_index("customer_id")
    buyers = frame.loc[["buyer", "free", "new"]]
    assert (buyers["ltv_method"] == "historical").all()
    assert (buyers["ltv_fallback_reason"] == "bg_nbd_not_fitted").all()
    assert (
        buyers[["probability_alive", "expected_purchases", "expected_avg_order_value"]]
        .isna()
        .all()
        .all()
    )
    # the revenue of the last 12 months, spread over the next 12 and discounted monthly
    assert MEAN_DISCOUNT == pytest.approx(0.95004, abs=1e-5)
    expected = {"buyer": 4000 * MEAN_DISCOUNT, "free": 0.0, "new": 800 * MEAN_DISCOUNT}
    for customer, value in expected.items():
        assert frame.loc[customer, "predicted_revenue_ltv"] == pytest.approx(value, abs=0.005)
    assert frame.loc["new", "predicted_gross_margin_ltv"] == pytest.approx(
        0.25 * 800 * MEAN_DISCOUNT, abs=0.01
    )
    prospect = frame.loc["prospect"]
    assert pd.isna(prospect["ltv_method"]) and pd.isna(prospect["ltv_fallback_reason"])
    assert pd.isna(prospect["predicted_revenue_ltv"])


def test_without_a_spend_model_buyers_keep_bg_nbd_and_get_their_historical_ltv():
    fits = FITS.copy()
    fits["is_fitted"] = fits["model_name"] == "bg_nbd"
    fits.loc[fits["model_name"] == "gamma_gamma", ["param_p", "param_q", "param_v"]] = None
    frame = customer_ltv(CUSTOMERS, ORDERS, fits, SETTINGS).set_index("customer_id")
    buyer = frame.loc["buyer"]
    assert (buyer["ltv_method"], buyer["ltv_fallback_reason"]) == (
        "historical", "gamma_gamma_not_fitted"
    )  # fmt: skip
    assert 0 < buyer["probability_alive"] < 1 and buyer["expected_purchases"] > 0
    assert pd.isna(buyer["expected_avg_order_value"])
    assert buyer["predicted_revenue_ltv"] == pytest.approx(4000 * MEAN_DISCOUNT, abs=0.005)


def test_a_prediction_that_is_not_finite_gives_way_to_the_historical_ltv():
    """With a + b < 1 BG/NBD's expected purchases of a young one-time buyer are NaN (the
    hypergeometric function of the formula has a negative third argument): that buyer gets the
    historical LTV; the others keep the models'."""
    fits = FITS.copy()
    fits.loc[fits["model_name"] == "bg_nbd", ["param_r", "param_alpha", "param_a", "param_b"]] = [
        0.5, 8.4, 0.1, 0.3,
    ]  # fmt: skip
    orders = pd.concat([ORDERS, NEW_BUYER], ignore_index=True)
    customers = pd.DataFrame({"customer_id": ["buyer", "new"]})
    frame = customer_ltv(customers, orders, fits, SETTINGS).set_index("customer_id")
    assert frame.loc["buyer", "ltv_method"] == "bg_nbd_gamma_gamma"
    new = frame.loc["new"]
    assert (new["ltv_method"], new["ltv_fallback_reason"]) == (
        "historical", "prediction_not_finite"
    )  # fmt: skip
    assert pd.isna(new["expected_purchases"]) and new["probability_alive"] == 1.0
    assert new["predicted_revenue_ltv"] == pytest.approx(800 * MEAN_DISCOUNT, abs=0.005)


def test_buyers_without_bg_nbd_get_the_recency_churn_rule():
    customers = pd.DataFrame({"customer_id": ["recent", "lapsed", "prospect"]})
    ltv = customers.assign(
        order_count=[1, 3, 0], probability_alive=[None, None, None],
        last_ordered_at=[T("2026-09-02 10:00"), T("2024-05-01"), None],
    )  # fmt: skip
    empty = {"subscriptions": ["subscription_id", "customer_id", "started_at", "cancelled_at",
                               "subscription_status", "monthly_price"],
             "orders": ["customer_id", "ordered_at"],
             "web_events": ["customer_id", "anonymous_id", "occurred_at"],
             "email_events": ["customer_id", "campaign_id", "event_type", "occurred_at"],
             "tickets": ["customer_id", "created_at", "resolved_at", "csat_score"]}  # fmt: skip
    sources = churn.ChurnSources(**{k: pd.DataFrame(columns=v) for k, v in empty.items()})
    settings = marts.ChurnSettings(as_of=AS_OF, churned_days=365)
    risk = customer_churn_risk(customers, ltv, sources, None, settings).set_index("customer_id")
    models = risk["churn_model"].fillna("none").to_dict()
    assert models == {"recent": "recency", "lapsed": "recency", "prospect": "none"}
    assert risk.loc["recent", "churn_probability"] == pytest.approx(59 / 365)
    assert risk.loc["recent", "churn_band"] == "low"
    assert (risk.loc["lapsed", "churn_probability"], risk.loc["lapsed", "churn_band"]) == (
        1.0,
        "high",
    )
    assert pd.isna(risk.loc["prospect", "churn_probability"])
