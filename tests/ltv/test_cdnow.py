"""The BG/NBD and Gamma-Gamma fits reproduce the published CDNOW estimates, starting from the raw
transaction log lifetimes ships (2,357 customers of the CDNOW sample, first purchases in the
first quarter of 1997, calibration to 1997-09-30, weeks).

Published: BG/NBD r = 0.243, alpha = 4.414, a = 0.793, b = 2.426, LL = -9582.4 (Fader, Hardie &
Lee 2005, "Counting your customers the easy way"); Gamma-Gamma p = 6.25, q = 3.74, v = 15.44
(Fader, Hardie & Lee 2005, "RFM and CLV", the same 946 repeat buyers).

The last tests run the dbt Python models `ltv_model_fits` and `customer_ltv` themselves, with
the settings dbt_project.yml ships, on the log as a shop's orders as of 1997-10-01.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from datetime import date
from importlib.resources import files

import duckdb
import numpy as np
import pandas as pd
import pytest
import yaml
from lifetimes.utils import summary_data_from_transaction_data

from crm360.ltv import marts, models
from crm360.ltv.summary import summarise_transactions
from crm360.settings import PROJECT_ROOT

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


# --- the marts' own path with the shipped defaults -------------------------------------------

DBT_DIR = PROJECT_ROOT / "dbt_project"
CDNOW_AS_OF = date(1997, 10, 1)  # calibration to 1997-09-30: the orders before this day


def dbt_model_config(model_name: str, as_of: date) -> dict:
    """The `config:` of a Python model of _ltv__models.yml as dbt renders it: the shipped vars
    of dbt_project.yml, with the run's date."""
    import jinja2

    project = yaml.safe_load((DBT_DIR / "dbt_project.yml").read_text(encoding="utf-8"))
    dbt_vars = {**project["vars"], "as_of_date": as_of.isoformat()}
    ltv_models = DBT_DIR / "models" / "marts" / "ltv" / "_ltv__models.yml"
    models_yml = yaml.safe_load(ltv_models.read_text(encoding="utf-8"))
    config = next(m for m in models_yml["models"] if m["name"] == model_name)["config"]
    render = {"var": lambda name, default=None: dbt_vars.get(name, default),
              "env_var": lambda name, default="": default}  # fmt: skip
    return {
        key: jinja2.Template(value).render(**render) if isinstance(value, str) else value
        for key, value in config.items()
    }


class FakeDbt:
    """The `dbt` object a dbt-duckdb Python model gets: its config, its refs as relations."""

    def __init__(self, config: dict, refs: dict):
        self.config = config
        self.refs = refs
        self.is_incremental = False

    def ref(self, name: str):
        return self.refs[name]


def run_dbt_python_model(model_name: str, session, refs: dict):
    """model(dbt, session) of dbt_project/models/marts/ltv/<model_name>.py, as dbt calls it."""
    path = DBT_DIR / "models" / "marts" / "ltv" / f"{model_name}.py"
    spec = importlib.util.spec_from_file_location(f"dbt_model_{model_name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dbt = FakeDbt(dbt_model_config(model_name, CDNOW_AS_OF), refs)
    return module.model(dbt, session)


@pytest.fixture(scope="module")
def cdnow_marts(transactions):
    """ltv_model_fits and customer_ltv as the dbt models build them with the shipped settings,
    from the CDNOW log as a shop's priced orders (1997-98, dollars and cents): every
    transaction a completed order at noon."""
    orders = pd.DataFrame({
        "order_id": range(1, len(transactions) + 1),
        "customer_id": "cdnow_" + transactions["customer_id"].astype(str).str.zfill(5),
        "ordered_at": transactions["purchased_on"] + pd.Timedelta(hours=12),
        "is_completed": True,
        "revenue": transactions["spend"],
        "gross_margin": (transactions["spend"] * 0.25).round(2),
    })  # fmt: skip
    with duckdb.connect() as con:
        con.register("orders_frame", orders)
        con.execute("""
            create table orders as
            select * replace (cast(revenue as decimal(18, 2)) as revenue,
                              cast(gross_margin as decimal(18, 2)) as gross_margin)
            from orders_frame
        """)
        con.execute("create table customers as select distinct customer_id from orders")
        fits = run_dbt_python_model(
            "ltv_model_fits", con, {"int_orders__priced": con.table("orders")}
        )
        con.register("fits", fits)
        ltv = run_dbt_python_model(
            "customer_ltv",
            con,
            {
                "customer_360": con.table("customers"),
                "int_orders__priced": con.table("orders"),
                "ltv_model_fits": con.table("fits"),
            },
        )
        return fits.to_pandas().set_index("model_name"), ltv.to_pandas()


def test_the_shipped_settings_are_the_published_fits_setup():
    config = dbt_model_config("ltv_model_fits", CDNOW_AS_OF)
    defaults = marts.LtvSettings(CDNOW_AS_OF)
    # no penalty, weeks, calibration to the day before as_of
    assert float(config["penalizer_coef"]) == 0.0
    assert float(config["time_unit_days"]) == WEEK
    assert str(defaults.calibration_end) == CALIBRATION_END
    # the Python defaults are the dbt vars, so code called without them behaves the same
    for name, value in config.items():
        if name != "as_of_date" and hasattr(defaults, name):
            assert float(value) == float(getattr(defaults, name)), name


def test_the_marts_reproduce_the_published_fits_with_the_shipped_settings(cdnow_marts):
    fits, _ = cdnow_marts
    published = {
        "bg_nbd": {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426},
        "gamma_gamma": {"p": 6.25, "q": 3.74, "v": 15.44},
    }
    for model_name, params in published.items():
        row = fits.loc[model_name]
        for name, value in params.items():
            assert row[f"param_{name}"] == pytest.approx(value, rel=0.005), (model_name, name)
        # the fit the mart records is the one made: no penalty, converged
        assert row["penalizer_coef"] == 0.0
        assert row["is_converged"] and row["is_fitted"]
        assert pd.isna(row["fit_note"])
        assert str(row["calibration_end_date"]) == CALIBRATION_END
    assert fits.loc["bg_nbd", "log_likelihood"] == pytest.approx(-9582.4, abs=0.1)
    assert fits.loc["bg_nbd", "customer_count"] == 2357
    assert fits.loc["gamma_gamma", "customer_count"] == 946


def test_every_cdnow_customer_gets_the_models_ltv(cdnow_marts):
    _, ltv = cdnow_marts
    assert len(ltv) == 2357
    assert (ltv["ltv_method"] == "bg_nbd_gamma_gamma").all()
    assert ltv["ltv_fallback_reason"].isna().all()
    assert np.isfinite(ltv["predicted_revenue_ltv"]).all()
    assert ltv["probability_alive"].between(0, 1).all()
