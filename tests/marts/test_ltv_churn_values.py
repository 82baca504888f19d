"""Values of the LTV and churn marts, recomputed from the staging tables and the identity graph."""

from __future__ import annotations

import json

import pytest

from crm360.warehouse import connect

pytestmark = pytest.mark.slow

AS_OF = "2026-11-01"


def test_historical_revenue_and_margin_match_the_order_lines(mart_warehouse):
    with connect(mart_warehouse.warehouse, read_only=True) as con:
        mismatches, buyers, total = con.execute(f"""
            with lines as (
                select
                    items.order_id,
                    sum(items.quantity * items.unit_price) as revenue,
                    sum(items.quantity * (items.unit_price - products.unit_cost)) as margin,
                from staging.stg_shop__order_items as items
                join staging.stg_shop__products as products using (product_id)
                group by 1
            ),
            expected as (
                select
                    graph.customer_id,
                    count(*) as order_count,
                    sum(lines.revenue) as revenue,
                    sum(lines.margin) as margin,
                    min(orders.ordered_at) as first_ordered_at,
                    max(orders.ordered_at) as last_ordered_at,
                from staging.stg_shop__orders as orders
                join lines using (order_id)
                join identity.identity_graph as graph
                    on graph.record_id = 'shop:' || orders.shop_customer_id
                where orders.is_completed and orders.ordered_at < timestamp '{AS_OF}'
                group by 1
            )
            select
                count(*) filter (
                    where coalesce(expected.order_count, 0) != ltv.order_count
                        or abs(coalesce(expected.revenue, 0) - ltv.historical_revenue) > 0.005
                        or abs(coalesce(expected.margin, 0) - ltv.historical_gross_margin) > 0.005
                        or expected.first_ordered_at is distinct from ltv.first_ordered_at
                        or expected.last_ordered_at is distinct from ltv.last_ordered_at
                ),
                count(*) filter (where ltv.order_count > 0),
                count(*),
            from marts.customer_ltv as ltv
            full join expected using (customer_id)
        """).fetchone()
    assert buyers > 500
    assert total > buyers  # customers who never bought have their row too
    assert mismatches == 0


def test_every_customer_has_one_row_in_both_marts(mart_warehouse):
    with connect(mart_warehouse.warehouse, read_only=True) as con:
        for mart in ("customer_ltv", "customer_churn_risk"):
            missing, extra, duplicated = con.execute(f"""
                select
                    (select count(*) from marts.customer_360
                     where customer_id not in (select customer_id from marts.{mart})),
                    (select count(*) from marts.{mart}
                     where customer_id not in (select customer_id from marts.customer_360)),
                    (select count(*) - count(distinct customer_id) from marts.{mart}),
            """).fetchone()
            assert (missing, extra, duplicated) == (0, 0, 0), mart


def test_probabilities_and_predictions_are_in_range(mart_warehouse):
    with connect(mart_warehouse.warehouse, read_only=True) as con:
        bad_ltv = con.execute("""
            select count(*) from marts.customer_ltv
            where (order_count > 0 and not (
                    probability_alive between 0 and 1
                    and expected_purchases >= 0
                    and expected_avg_order_value > 0
                    and predicted_revenue_ltv >= 0))
                or (order_count = 0 and (probability_alive is not null
                    or predicted_revenue_ltv is not null))
        """).fetchone()[0]
        bad_churn = con.execute("""
            select count(*) from marts.customer_churn_risk
            where churn_probability not between 0 and 1
                or (churn_model is not null and churn_probability is null)
        """).fetchone()[0]
    assert bad_ltv == 0
    assert bad_churn == 0


def test_churn_model_follows_subscription_and_purchase(mart_warehouse):
    with connect(mart_warehouse.warehouse, read_only=True) as con:
        rows = con.execute("""
            select
                c360.has_active_subscription,
                c360.order_count > 0 as is_buyer,
                risk.churn_model,
                count(*),
                -- bg_nbd: the complement of customer_ltv's probability alive
                count(*) filter (where risk.churn_model = 'bg_nbd'
                    and abs(risk.churn_probability - (1 - ltv.probability_alive)) > 1e-9),
            from marts.customer_360 as c360
            join marts.customer_churn_risk as risk using (customer_id)
            join marts.customer_ltv as ltv using (customer_id)
            group by all
        """).fetchall()
    models = {(sub, buyer): model for sub, buyer, model, _, _ in rows}
    assert all(mismatch == 0 for *_, mismatch in rows)
    assert {m for (sub, _), m in models.items() if sub} == {"subscription"}
    assert models.get((False, True)) == "bg_nbd"
    assert models.get((False, False)) is None
    assert any(sub for sub, _ in models)


def test_fit_parameters_exist_for_the_run(mart_warehouse):
    with connect(mart_warehouse.warehouse, read_only=True) as con:
        fits = con.execute(f"""
            select model_name, customer_count, param_r, param_alpha, param_a, param_b,
                param_p, param_q, param_v, log_likelihood
            from marts.ltv_model_fits where as_of_date = date '{AS_OF}' order by model_name
        """).fetchall()
        buyers, repeat_buyers = con.execute("""
            select count(*) filter (where order_count > 0),
                count(*) filter (where frequency > 0 and historical_revenue > 0)
            from marts.customer_ltv
        """).fetchone()
    assert [f[0] for f in fits] == ["bg_nbd", "gamma_gamma"]
    bg_nbd, gamma_gamma = fits
    assert bg_nbd[1] == buyers
    assert all(value > 0 for value in bg_nbd[2:6])
    assert 0 < gamma_gamma[1] <= repeat_buyers
    assert all(value > 0 for value in gamma_gamma[6:9])
    assert gamma_gamma[7] > 1  # q > 1: the population's mean spend is finite


def test_churn_evaluation_is_consistent(mart_warehouse):
    with connect(mart_warehouse.warehouse, read_only=True) as con:
        row = con.execute(f"""
            select holdout_auc, holdout_row_count, holdout_cancelled_count, holdout_base_rate,
                holdout_brier_score, train_row_count, calibration_bins, holdout_cutoff_date,
                label_days
            from marts.churn_model_evaluation where as_of_date = date '{AS_OF}'
        """).fetchone()
        (auc, holdout, cancelled, base_rate, brier, train, bins, cutoff, label_days) = row
        # the holdout is every subscription running at the holdout cutoff, recomputed here
        expected_holdout, expected_cancelled = con.execute(f"""
            select count(*),
                count(*) filter (where cancelled_at < date '{AS_OF}'),
            from staging.stg_shop__subscriptions as subs
            join identity.identity_graph as graph
                on graph.record_id = 'shop:' || subs.shop_customer_id
            where subs.started_at < date '{cutoff}'
                and (subs.cancelled_at is null or subs.cancelled_at >= date '{cutoff}')
        """).fetchone()
    assert 0 < auc < 1
    assert (holdout, cancelled) == (expected_holdout, expected_cancelled)
    assert base_rate == pytest.approx(cancelled / holdout)
    assert 0 <= brier <= 1
    assert train > 0
    calibration = json.loads(bins)
    assert sum(b["row_count"] for b in calibration) == holdout
    assert sum(b["observed_rate"] * b["row_count"] for b in calibration) == pytest.approx(cancelled)
    assert label_days == 90
