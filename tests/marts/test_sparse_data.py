"""Every mart builds, and every dbt test of the build passes, on tiny and sparse data: no
customer at all, one, five, a shop with orders and CRM contacts only (no subscription, return,
e-mail, web, support, social or marketing spend data), and a shop where nobody bought twice. Customers keep their row
in every per-customer mart, and a model that cannot be fitted gives way to a recorded fallback,
never to a NULL or NaN."""

from __future__ import annotations

import json
import math

import pytest
from sparse_warehouse import SPARSE_AS_OF, build_sparse_warehouse

from crm360.warehouse import connect
from ingestion import SOURCES

pytestmark = pytest.mark.slow

SCENARIOS = {
    # one generated person, every raw table then emptied
    "no_customers": {"customers": 1, "empty": SOURCES},
    "one_customer": {"customers": 1},
    "five_customers": {"customers": 5},
    "orders_and_crm_only": {
        "customers": 30,
        "empty": (
            *(source for source in SOURCES if source not in ("crm", "shop")),
            "shop.subscriptions",
            "shop.returns",
        ),
    },
    "no_repeat_buyers": {"customers": 30, "first_orders_only": True},
}
# the marts with one row per customer of customer_360
PER_CUSTOMER_MARTS = (
    "audience_base",
    "customer_best_channel_time",
    "customer_churn_risk",
    "customer_contact_pressure",
    "customer_lifecycle",
    "customer_ltv",
)
AS_OF_SQL = f"date '{SPARSE_AS_OF.isoformat()}'"


@pytest.fixture(scope="module")
def warehouses(tmp_path_factory):
    """build(scenario) -> (settings, build summary); each scenario is built once."""
    built = {}

    def build(scenario: str):
        if scenario not in built:
            root = tmp_path_factory.mktemp(scenario)
            built[scenario] = build_sparse_warehouse(root, **SCENARIOS[scenario])
        return built[scenario]

    return build


def query(settings, sql: str) -> list[tuple]:
    with connect(settings.warehouse, read_only=True) as con:
        return con.execute(sql).fetchall()


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_mart_is_built_and_every_dbt_test_passes(warehouses, scenario):
    settings, summary = warehouses(scenario)
    assert summary["failed"] == []
    assert set(summary["statuses"]) <= {"success", "pass"}, summary["statuses"]
    manifest = json.loads((settings.dbt_target_dir / "manifest.json").read_text())
    marts = {
        node["name"]
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model"
        and node["original_file_path"].startswith("models/marts/")
    }
    tables = {row[0] for row in query(
        settings, "select table_name from duckdb_tables() where schema_name = 'marts'"
    )}  # fmt: skip
    assert len(marts) > 15
    assert marts <= tables
    # a column typed NULL (from an empty or all-null frame) breaks readers and later runs
    untyped = query(settings, """
        select table_name || '.' || column_name from duckdb_columns()
        where schema_name = 'marts' and data_type = '"NULL"'
    """)  # fmt: skip
    assert untyped == []


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_customer_has_one_row_in_every_per_customer_mart(warehouses, scenario):
    settings, _ = warehouses(scenario)
    ((customers, rows, distinct),) = query(settings, """
        select (select count(distinct customer_id) from identity.identity_graph),
            count(*), count(distinct customer_id),
        from marts.customer_360
    """)  # fmt: skip
    assert rows == distinct == customers
    for mart in PER_CUSTOMER_MARTS:
        ((missing, extra, duplicated),) = query(settings, f"""
            select
                (select count(*) from marts.customer_360
                 where customer_id not in (select customer_id from marts.{mart})),
                (select count(*) from marts.{mart}
                 where customer_id not in (select customer_id from marts.customer_360)),
                (select count(*) - count(distinct customer_id) from marts.{mart}),
        """)  # fmt: skip
        assert (missing, extra, duplicated) == (0, 0, 0), mart


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_buyer_has_a_finite_ltv_and_a_fallback_says_why(warehouses, scenario):
    settings, _ = warehouses(scenario)
    fits = {
        name: (is_fitted, note)
        for name, is_fitted, note in query(settings, f"""
            select model_name, is_fitted, fit_note from marts.ltv_model_fits
            where as_of_date = {AS_OF_SQL}
        """)
    }  # fmt: skip
    assert set(fits) == {"bg_nbd", "gamma_gamma"}
    for is_fitted, note in fits.values():
        assert is_fitted or note.startswith("not fitted: ")
    rows = query(
        settings,
        """
        select order_count, predicted_revenue_ltv, predicted_gross_margin_ltv, ltv_method,
            ltv_fallback_reason
        from marts.customer_ltv
    """,
    )
    for order_count, revenue_ltv, margin_ltv, method, reason in rows:
        if order_count == 0:
            assert (revenue_ltv, method, reason) == (None, None, None)
            continue
        assert revenue_ltv is not None and math.isfinite(revenue_ltv) and revenue_ltv >= 0
        assert margin_ltv is not None and math.isfinite(margin_ltv)
        assert method in ("bg_nbd_gamma_gamma", "historical")
        assert (method == "historical") == (reason is not None)
        if not fits["bg_nbd"][0]:
            assert reason == "bg_nbd_not_fitted"
        elif not fits["gamma_gamma"][0]:
            assert reason == "gamma_gamma_not_fitted"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_buyer_has_a_churn_probability_and_an_untrained_model_says_why(warehouses, scenario):
    settings, _ = warehouses(scenario)
    ((trained, reason),) = query(settings, f"""
        select is_model_trained, model_not_trained_reason from marts.churn_model_evaluation
        where as_of_date = {AS_OF_SQL}
    """)  # fmt: skip
    assert trained or reason
    bad = query(
        settings,
        """
        select risk.customer_id, risk.churn_model, risk.churn_probability
        from marts.customer_churn_risk as risk
        join marts.customer_ltv as ltv using (customer_id)
        where (ltv.order_count > 0 and not coalesce(risk.churn_probability between 0 and 1, false))
            or (risk.churn_model = 'recency') != (ltv.order_count > 0
                and ltv.probability_alive is null and risk.subscription_id is null)
    """,
    )
    assert bad == []


def test_without_customers_every_mart_is_empty_and_the_models_say_why(warehouses):
    settings, _ = warehouses("no_customers")
    for mart in PER_CUSTOMER_MARTS:
        assert query(settings, f"select count(*) from marts.{mart}") == [(0,)], mart
    notes = query(settings, "select model_name, fit_note from marts.ltv_model_fits order by 1")
    assert notes == [
        ("bg_nbd", "not fitted: BG/NBD needs at least 5 buyers; found 0"),
        ("gamma_gamma", "not fitted: Gamma-Gamma needs at least 4 repeat buyers with a "
         "positive monetary value; found 0"),
    ]  # fmt: skip


def test_without_a_repeat_buyer_bg_nbd_is_not_fitted_and_buyers_get_their_history(warehouses):
    settings, _ = warehouses("no_repeat_buyers")
    ((buyers, repeat_buyers, historical),) = query(settings, """
        select count(*) filter (where order_count > 0), count(*) filter (where frequency > 0),
            count(*) filter (where ltv_fallback_reason = 'bg_nbd_not_fitted'),
        from marts.customer_ltv
    """)  # fmt: skip
    assert buyers > 5 and repeat_buyers == 0
    assert historical == buyers
    ((note,),) = query(
        settings, "select fit_note from marts.ltv_model_fits where model_name = 'bg_nbd'"
    )
    assert note == f"not fitted: BG/NBD needs a repeat buyer; none of {buyers} buyers is"
    models = query(settings, """
        select churn_model, count(*) from marts.customer_churn_risk
        join marts.customer_ltv using (customer_id)
        where order_count > 0 group by 1
    """)  # fmt: skip
    assert {model for model, _ in models} <= {"recency", "subscription"}


def test_without_campaign_data_every_customer_keeps_a_best_channel_row(warehouses):
    settings, _ = warehouses("orders_and_crm_only")
    rows = query(settings, """
        select preferred_channel, is_channel_fallback, best_send_hour, is_time_fallback,
            email_send_count + line_send_count, count(*)
        from marts.customer_best_channel_time group by all
    """)  # fmt: skip
    # no campaign was ever sent: e-mail, the rule's tie-break; no open or click: no time
    assert [row[:-1] for row in rows] == [("email", True, None, True, 0)]
    assert rows[0][-1] == query(settings, "select count(*) from marts.customer_360")[0][0] > 10
