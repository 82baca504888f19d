"""Values of the campaign marts, recomputed in Python from the staging tables and the identity
graph (not from the intermediate models the marts are built on), and the normal-quantile macro
behind the uplift interval checked against the standard library."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from datetime import datetime, timedelta

import duckdb
import jinja2
import pytest
import yaml

from crm360.settings import PROJECT_ROOT
from crm360.warehouse import connect

AS_OF = datetime(2026, 11, 1)
JST_OFFSET = timedelta(hours=9)  # Japan keeps no daylight saving time
DBT_PROJECT = PROJECT_ROOT / "dbt_project"


def project_var(name: str):
    return yaml.safe_load((DBT_PROJECT / "dbt_project.yml").read_text())["vars"][name]


def normal_quantile_sql(p: str) -> str:
    """The SQL the normal_quantile macro renders for the expression `p` (plain Jinja: the macro
    uses no dbt context)."""
    template = jinja2.Environment().from_string(
        (DBT_PROJECT / "macros" / "normal_quantile.sql").read_text()
    )
    return str(template.module.normal_quantile(p))


# --- the normal quantile macro -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "z"), [(0.90, 1.6448536269514722), (0.95, 1.959963984540054), (0.99, 2.5758293035489)]
)
def test_two_sided_critical_values(level, z):
    sql = normal_quantile_sql(f"(1 + {level}) / 2")
    assert duckdb.sql(f"select {sql}").fetchall()[0][0] == pytest.approx(z, abs=1e-8)


def test_normal_quantile_matches_the_standard_library_in_both_tails_and_the_centre():
    # both region boundaries of the approximation (0.02425, 0.97575) and far into the tails
    probabilities = [1e-9, 1e-4, 0.001, 0.02, 0.02425, 0.025, 0.1, 0.3, 0.5, 0.7, 0.9]
    probabilities += [0.97, 0.97575, 0.98, 0.999, 1 - 1e-6]
    rows = duckdb.sql(
        f"select p, {normal_quantile_sql('p')} as z from unnest({probabilities}) as t(p)"
    ).fetchall()
    for p, z in rows:
        expected = statistics.NormalDist().inv_cdf(p)
        assert z == pytest.approx(expected, rel=2e-9, abs=1e-9), p


def test_normal_quantile_is_null_outside_the_open_unit_interval():
    rows = duckdb.sql(f"select {normal_quantile_sql('p')} from unnest([0.0, 1.0, -0.5]) as t(p)")
    assert rows.fetchall() == [(None,), (None,), (None,)]


# --- campaign_performance --------------------------------------------------------------------------


def fetch(con, sql: str) -> list[tuple]:
    return con.execute(sql).fetchall()


def load_campaign_facts(con):
    """Campaigns, recipient events per customer and completed orders per customer, read from
    staging and the identity graph."""
    campaigns = {
        campaign_id: sent_at
        for campaign_id, sent_at in fetch(
            con, "select campaign_id, sent_at from staging.stg_email__campaigns"
        )
        if sent_at < AS_OF
    }
    events = fetch(
        con,
        """
        select graph.customer_id, events.campaign_id, campaigns.campaign_channel,
            events.event_type, events.occurred_at,
        from staging.stg_email__events as events
        join identity.identity_graph as graph on graph.record_id = 'crm:' || events.contact_id
        join staging.stg_email__campaigns as campaigns using (campaign_id)
        """,
    )
    events = [e for e in events if e[4] < AS_OF and e[1] in campaigns]
    orders = fetch(
        con,
        """
        select orders.order_id, graph.customer_id, orders.ordered_at,
            sum(items.quantity * items.unit_price) as revenue,
        from staging.stg_shop__orders as orders
        join staging.stg_shop__order_items as items using (order_id)
        join identity.identity_graph as graph
            on graph.record_id = 'shop:' || orders.shop_customer_id
        where orders.is_completed
        group by all
        """,
    )
    orders_by_customer = defaultdict(list)
    for order_id, customer_id, ordered_at, revenue in orders:
        if ordered_at < AS_OF:
            orders_by_customer[customer_id].append((order_id, ordered_at, revenue))
    return campaigns, events, orders_by_customer


def last_touch_revenue(campaigns, sent, orders_by_customer, window) -> Counter:
    """Revenue per campaign when each order goes to the latest send (then the highest campaign
    id) whose window (sent_at, sent_at + window] holds it."""
    sent_campaigns_of = defaultdict(list)
    for campaign_id, customers in sent.items():
        for customer in customers:
            sent_campaigns_of[customer].append(campaign_id)
    attributed = Counter()
    for customer, orders in orders_by_customer.items():
        for _, ordered_at, revenue in orders:
            touching = [
                campaign_id
                for campaign_id in sent_campaigns_of[customer]
                if campaigns[campaign_id] < ordered_at <= campaigns[campaign_id] + window
            ]
            if touching:
                attributed[max(touching, key=lambda c: (campaigns[c], c))] += revenue
    return attributed


def expected_campaign_totals(con) -> dict[str, dict]:
    campaigns, events, orders_by_customer = load_campaign_facts(con)
    window = timedelta(days=project_var("attribution_window_days"))
    sent = defaultdict(set)
    held_out = defaultdict(set)
    for customer_id, campaign_id, _, event_type, _ in events:
        if event_type == "send":
            sent[campaign_id].add(customer_id)
        elif event_type == "holdout":
            held_out[campaign_id].add(customer_id)

    def converted(campaign_id, customers):
        sent_at = campaigns[campaign_id]
        return sum(
            any(sent_at < order[1] <= sent_at + window for order in orders_by_customer[customer])
            for customer in customers
        )

    attributed = last_touch_revenue(campaigns, sent, orders_by_customer, window)
    totals = {}
    for campaign_id in campaigns:
        treated = sent[campaign_id]
        control = held_out[campaign_id] - treated
        totals[campaign_id] = {
            "treated_count": len(treated),
            "control_count": len(control),
            "treated_conversion_count": converted(campaign_id, treated),
            "control_conversion_count": converted(campaign_id, control),
            "attributed_revenue": attributed[campaign_id],
        }
    return totals


@pytest.mark.slow
def test_campaign_totals_match_an_independent_recount(mart_warehouse):
    with connect(mart_warehouse.warehouse, read_only=True) as con:
        expected = expected_campaign_totals(con)
        columns = list(next(iter(expected.values())))
        rows = fetch(
            con,
            f"""
            select campaign_id, {", ".join(columns)},
            from marts.campaign_performance
            where is_campaign_total
            """,
        )
    actual = {row[0]: dict(zip(columns, row[1:], strict=True)) for row in rows}
    assert len(expected) > 5
    assert sum(t["control_count"] for t in expected.values()) > 0
    assert sum(t["treated_conversion_count"] for t in expected.values()) > 0
    assert sum(t["attributed_revenue"] for t in expected.values()) > 0
    assert actual == expected


@pytest.mark.slow
def test_segment_rows_add_up_to_the_campaign_total(mart_warehouse):
    with connect(mart_warehouse.warehouse, read_only=True) as con:
        mismatches = fetch(
            con,
            """
            with segments as (
                select campaign_id,
                    sum(audience_count) as audience_count,
                    sum(treated_conversion_count) as treated_conversion_count,
                    sum(control_conversion_count) as control_conversion_count,
                    sum(attributed_revenue) as attributed_revenue,
                    sum(campaign_cost) as campaign_cost,
                from marts.campaign_performance
                where not is_campaign_total
                group by 1
            )
            select totals.campaign_id
            from marts.campaign_performance as totals
            left join segments using (campaign_id)
            where totals.is_campaign_total
                and (totals.audience_count != coalesce(segments.audience_count, 0)
                    or totals.treated_conversion_count != segments.treated_conversion_count
                    or totals.control_conversion_count != segments.control_conversion_count
                    or totals.attributed_revenue != segments.attributed_revenue
                    or abs(totals.campaign_cost - segments.campaign_cost) > 0.05)
            """,
        )
        segments = fetch(
            con, "select distinct rfm_segment from marts.campaign_performance order by 1"
        )
    assert mismatches == []
    assert ("No purchase",) in segments and ("All",) in segments and len(segments) > 3


@pytest.mark.slow
def test_uplift_is_null_exactly_for_campaigns_without_a_control_group(mart_warehouse):
    with connect(mart_warehouse.warehouse, read_only=True) as con:
        rows = fetch(
            con,
            """
            select has_control_group, uplift is not null, count(*)
            from marts.campaign_performance
            where is_campaign_total
            group by all
            """,
        )
    assert {(has_control, has_uplift) for has_control, has_uplift, _ in rows} == {
        (True, True),
        (False, False),
    }


def newcombe_interval(x1: int, n1: int, x2: int, n2: int, level: float) -> tuple[float, float]:
    """Newcombe's hybrid score interval of p1 - p2 (method 10 of Newcombe 1998)."""
    z = statistics.NormalDist().inv_cdf((1 + level) / 2)

    def wilson(x: int, n: int) -> tuple[float, float]:
        p = x / n
        centre = p + z * z / (2 * n)
        half = z * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5
        return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)

    p1, p2 = x1 / n1, x2 / n2
    (l1, u1), (l2, u2) = wilson(x1, n1), wilson(x2, n2)
    difference = p1 - p2
    return (
        difference - ((p1 - l1) ** 2 + (u2 - p2) ** 2) ** 0.5,
        difference + ((u1 - p1) ** 2 + (p2 - l2) ** 2) ** 0.5,
    )


@pytest.mark.slow
def test_uplift_interval_is_newcombes_on_every_campaign_with_a_control_group(mart_warehouse):
    with connect(mart_warehouse.warehouse, read_only=True) as con:
        rows = fetch(
            con,
            """
            select campaign_id, rfm_segment, treated_conversion_count, treated_count,
                control_conversion_count, control_count, uplift_confidence_level,
                uplift_ci_lower, uplift_ci_upper
            from marts.campaign_performance
            where uplift is not null
            """,
        )
    assert rows
    for campaign, segment, x1, n1, x2, n2, level, lower, upper in rows:
        expected = newcombe_interval(int(x1), int(n1), int(x2), int(n2), float(level))
        assert (lower, upper) == pytest.approx(expected, abs=6e-5), (campaign, segment)
        assert -1 <= lower <= upper <= 1


# --- contact pressure and best time ----------------------------------------------------------------


@pytest.mark.slow
def test_contact_pressure_matches_an_independent_recount(mart_warehouse):
    with connect(mart_warehouse.warehouse, read_only=True) as con:
        _, events, _ = load_campaign_facts(con)
        customers = [row[0] for row in fetch(con, "select customer_id from marts.customer_360")]
        columns = [
            "send_count_7d",
            "send_count_30d",
            "email_send_count_7d",
            "email_send_count_30d",
            "line_send_count_7d",
            "line_send_count_30d",
            "send_count_total",
            "last_contacted_at",
            "days_since_last_contact",
        ]
        rows = fetch(
            con,
            f"select customer_id, {', '.join(columns)} from marts.customer_contact_pressure",
        )
    # every customer_360 customer, contacted or not
    expected = {
        customer: dict.fromkeys(columns[:7], 0) | dict.fromkeys(columns[7:])
        for customer in customers
    }
    for customer_id, _, channel, event_type, occurred_at in events:
        if event_type != "send":
            continue
        counts = expected[customer_id]
        for days in (7, 30):  # [as_of - days, as_of)
            if occurred_at >= AS_OF - timedelta(days=days):
                counts[f"send_count_{days}d"] += 1
                counts[f"{channel}_send_count_{days}d"] += 1
        counts["send_count_total"] += 1
        if counts["last_contacted_at"] is None or occurred_at > counts["last_contacted_at"]:
            counts["last_contacted_at"] = occurred_at
            counts["days_since_last_contact"] = (AS_OF.date() - occurred_at.date()).days
    actual = {row[0]: dict(zip(columns, row[1:], strict=True)) for row in rows}

    assert len(rows) == len(customers) == len(actual)  # each customer exactly once
    assert sum(c["send_count_30d"] for c in expected.values()) > 0
    assert actual == expected


@pytest.mark.slow
def test_best_send_hour_is_the_most_frequent_tokyo_hour(mart_warehouse):
    min_events = 3  # the model's default for best_time_min_events
    with connect(mart_warehouse.warehouse, read_only=True) as con:
        _, events, _ = load_campaign_facts(con)
        customer_count = fetch(con, "select count(*) from marts.customer_360")[0][0]
        rows = fetch(
            con,
            """
            select customer_id, best_send_hour, best_send_weekday, is_time_fallback,
                engagement_event_count, best_hour_event_count,
            from marts.customer_best_channel_time
            """,
        )
    hours = defaultdict(Counter)
    weekdays = Counter()
    for customer_id, _, _, event_type, occurred_at in events:
        if event_type in ("open", "click"):
            local = occurred_at + JST_OFFSET
            hours[customer_id][local.hour] += 1
            weekdays[local.isoweekday()] += 1
    assert len(rows) == customer_count == len({row[0] for row in rows})
    checked = 0
    for customer_id, hour, weekday, is_fallback, event_count, hour_count in rows:
        own = hours[customer_id]
        assert event_count == sum(own.values())
        assert is_fallback == (event_count < min_events)
        assert hour_count == own[hour]
        if is_fallback:
            assert weekdays[weekday] == max(weekdays.values())
        else:
            assert own[hour] == max(own.values())
            checked += 1
    assert checked > 0
