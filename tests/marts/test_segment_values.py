"""Values of the segment and value marts, recomputed in Python from the priced orders, the
segment seed and the dbt vars, and compared with what dbt built."""

from __future__ import annotations

import csv
import math
from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
import yaml

from crm360.warehouse import connect
from tests.conftest import MARTS_AS_OF

pytestmark = pytest.mark.slow

DBT_PROJECT = Path(__file__).resolve().parents[2] / "dbt_project"
VARS = yaml.safe_load((DBT_PROJECT / "dbt_project.yml").read_text(encoding="utf-8"))["vars"]
LIFECYCLE = VARS["lifecycle"]
RECENT_ORDER_DAYS = 365


@dataclass
class Buyer:
    """A customer's completed orders before an as-of date, oldest first."""

    times: list[datetime] = field(default_factory=list)
    revenues: list[Decimal] = field(default_factory=list)


def month_start(day: date, months_back: int = 0) -> date:
    index = day.year * 12 + day.month - 1 - months_back
    return date(index // 12, index % 12 + 1, 1)


def buyers_as_of(orders: list[tuple], as_of: date) -> dict[str, Buyer]:
    cutoff = datetime.combine(as_of, datetime.min.time())
    buyers: dict[str, Buyer] = defaultdict(Buyer)
    for customer_id, ordered_at, revenue in orders:  # sorted by time
        if ordered_at < cutoff:
            buyers[customer_id].times.append(ordered_at)
            buyers[customer_id].revenues.append(revenue)
    return buyers


def lifecycle_stage(buyer: Buyer | None, as_of: date) -> str:
    if buyer is None:
        return "prospect"
    since_last = (as_of - buyer.times[-1].date()).days
    if since_last > LIFECYCLE["churned_days"]:
        return "churned"
    if since_last > LIFECYCLE["dormant_days"]:
        return "dormant"
    if since_last > min(LIFECYCLE["at_risk_days"], LIFECYCLE["active_days"]):
        return "at_risk"
    if len(buyer.times) > 1:
        gap = (buyer.times[-1].date() - buyer.times[-2].date()).days
        if gap >= LIFECYCLE["reactivated_gap_days"]:
            return "reactivated"
    if (as_of - buyer.times[0].date()).days <= LIFECYCLE["new_days"]:
        return "new"
    recent_start = as_of - timedelta(days=RECENT_ORDER_DAYS)
    recent = sum(1 for t in buyer.times if t.date() >= recent_start)
    if recent >= LIFECYCLE["loyal_orders"]:
        return "loyal"
    if recent >= LIFECYCLE["repeat_orders"]:
        return "repeat"
    return "active"


def bucket(rank: int, n: int, buckets: int) -> int:
    """ceil(buckets * rank / n), exactly, with rank = how many values are at or below this one
    (ties share the better bucket: the value deciles)."""
    return math.ceil(Fraction(buckets * rank, n))


def lower_bucket(below: int, n: int, buckets: int) -> int:
    """floor(buckets * below / n) + 1, with below = how many values are strictly worse (ties
    share the worse bucket: the RFM scores)."""
    return buckets * below // n + 1


def segment_map() -> dict[tuple[int, int], str]:
    with (DBT_PROJECT / "seeds" / "rfm_segment_map.csv").open(encoding="utf-8") as handle:
        return {
            (int(row["r_score"]), int(row["fm_score"])): row["rfm_segment"]
            for row in csv.DictReader(handle)
        }


def rfm(buyers: dict[str, Buyer], as_of: date) -> dict[str, tuple[int, int, int, str]]:
    """(r, f, m, segment) of every buyer: quintiles over the buyers with an order in the window;
    the others 1, 1, 1."""
    window_start = datetime.combine(
        as_of - timedelta(days=VARS["rfm_window_days"]), datetime.min.time()
    )
    ranked = {}
    for customer_id, buyer in buyers.items():
        in_window = [
            r for t, r in zip(buyer.times, buyer.revenues, strict=True) if t >= window_start
        ]
        if in_window:
            recency = (as_of - buyer.times[-1].date()).days
            ranked[customer_id] = (-recency, len(in_window), sum(in_window))
    n = len(ranked)
    columns = [sorted(values[i] for values in ranked.values()) for i in range(3)]
    cells = segment_map()
    result = {}
    for customer_id in buyers:
        if customer_id in ranked:
            r, f, m = (
                lower_bucket(bisect_left(columns[i], ranked[customer_id][i]), n, 5)
                for i in range(3)
            )
        else:
            r, f, m = 1, 1, 1
        fm = (f + m + 1) // 2  # half up
        result[customer_id] = (r, f, m, cells[(r, fm)])
    return result


@pytest.fixture(scope="module")
def orders(mart_warehouse) -> list[tuple]:
    with connect(mart_warehouse.warehouse, read_only=True) as con:
        return con.execute("""
            select customer_id, ordered_at, revenue
            from intermediate.int_orders__priced
            where is_completed and customer_id is not null
            order by ordered_at, order_id
        """).fetchall()


def query(settings, sql: str) -> list[tuple]:
    with connect(settings.warehouse, read_only=True) as con:
        return con.execute(sql).fetchall()


def test_rfm_scores_and_segments_of_every_buyer(mart_warehouse, orders):
    expected = rfm(buyers_as_of(orders, MARTS_AS_OF), MARTS_AS_OF)
    rows = query(
        mart_warehouse,
        "select customer_id, r_score, f_score, m_score, rfm_segment from marts.customer_rfm",
    )
    actual = {row[0]: tuple(row[1:]) for row in rows}
    assert len(actual) > 500
    unranked = sum(1 for scores in expected.values() if scores[:3] == (1, 1, 1))
    assert unranked > 0, "the demo data must have buyers older than the RFM window"
    assert actual == expected


def test_value_deciles_revenue_sums_and_top_20_share(mart_warehouse, orders):
    revenue = {
        customer_id: sum(buyer.revenues)
        for customer_id, buyer in buyers_as_of(orders, MARTS_AS_OF).items()
    }
    values = sorted(revenue.values())
    n, total = len(values), sum(values)
    decile = {c: 11 - bucket(bisect_right(values, v), n, 10) for c, v in revenue.items()}
    decile_revenue = Counter()
    for customer_id, value in revenue.items():
        decile_revenue[decile[customer_id]] += value
    top_tier = sum(v for c, v in revenue.items() if decile[c] <= 2)

    summary = query(
        mart_warehouse,
        "select revenue_decile, revenue, customers, top_tier_revenue_share, "
        "top_tier_customer_share from marts.value_tier_summary order by 1",
    )
    assert [row[0] for row in summary] == list(range(1, 11))
    assert {row[0]: row[1] for row in summary} == {d: decile_revenue[d] for d in range(1, 11)}
    assert sum(row[2] for row in summary) == n
    assert summary[0][3] == pytest.approx(float(top_tier / total), abs=1e-6)
    # no tie at the edge in the demo: the top tier is exactly the top ceil(20%) of buyers
    top_count = math.ceil(n / 5)
    assert values[-top_count] != values[-top_count - 1]
    assert summary[0][4] == pytest.approx(top_count / n, abs=1e-6)
    assert float(sum(values[-top_count:]) / total) == pytest.approx(summary[0][3], abs=1e-6)

    tiers = dict(
        query(mart_warehouse, "select customer_id, revenue_decile from marts.customer_value_tiers")
    )
    assert tiers == decile


def test_lifecycle_stage_of_every_customer(mart_warehouse, orders):
    buyers = buyers_as_of(orders, MARTS_AS_OF)
    customers = [
        row[0] for row in query(mart_warehouse, "select customer_id from marts.customer_360")
    ]
    expected = {c: lifecycle_stage(buyers.get(c), MARTS_AS_OF) for c in customers}
    actual = dict(
        query(mart_warehouse, "select customer_id, lifecycle_stage from marts.customer_lifecycle")
    )
    counts = Counter(expected.values())
    assert set(counts) == {
        "prospect",
        "new",
        "active",
        "repeat",
        "loyal",
        "at_risk",
        "dormant",
        "churned",
        "reactivated",
    }, f"every stage should occur in the demo data: {counts}"
    assert Counter(actual.values()) == counts
    assert actual == expected


def test_monthly_history_recomputed_for_a_past_month(mart_warehouse, orders):
    """A month a year back: stages and segments as if the marts had been run then."""
    as_of = month_start(MARTS_AS_OF, 12)
    buyers = buyers_as_of(orders, as_of)
    segments = rfm(buyers, as_of)
    expected = {c: (lifecycle_stage(b, as_of), segments[c][3]) for c, b in buyers.items()}
    rows = query(
        mart_warehouse,
        "select customer_id, lifecycle_stage, rfm_segment from marts.customer_monthly_history "
        f"where as_of_date = date '{as_of}'",
    )
    assert len(rows) > 100
    assert {row[0]: (row[1], row[2]) for row in rows} == expected


def test_monthly_history_last_month_is_the_current_marts(mart_warehouse):
    ((mismatches, rows),) = query(
        mart_warehouse,
        f"""
        select
            count(*) filter (
                where history.lifecycle_stage != lifecycle.lifecycle_stage
                    or history.rfm_segment != rfm.rfm_segment
            ),
            count(*),
        from marts.customer_monthly_history as history
        full join (select * from marts.customer_lifecycle where lifecycle_stage != 'prospect')
            as lifecycle using (customer_id)
        full join marts.customer_rfm as rfm using (customer_id)
        where history.as_of_date = date '{MARTS_AS_OF}' or history.as_of_date is null
        """,
    )
    assert rows > 500
    assert mismatches == 0
    months = query(
        mart_warehouse, "select count(distinct month) from marts.customer_monthly_history"
    )
    assert months == [(VARS["history_months"],)]


def test_migration_rows_sum_to_previous_buyers_plus_newcomers(mart_warehouse, orders):
    first_order = {}
    for customer_id, ordered_at, _ in orders:
        first_order.setdefault(customer_id, ordered_at.date())

    def buyers_before(day: date) -> int:
        return sum(1 for first in first_order.values() if first < day)

    rows = query(
        mart_warehouse,
        "select month, sum(customers), sum(customers) filter (where from_stage != 'prospect') "
        "from marts.lifecycle_migration group by 1 order by 1",
    )
    assert len(rows) == VARS["history_months"]
    for month, customers, from_buyers in rows:
        month_as_of = month_start(month, -1)
        assert customers == buyers_before(month_as_of), month
        assert (from_buyers or 0) == buyers_before(month), month


def test_cohort_sizes_sum_to_the_buyers_they_cover(mart_warehouse, orders):
    current_month = month_start(MARTS_AS_OF)
    first_cohort = month_start(MARTS_AS_OF, VARS["history_months"])
    first_order = {}
    for customer_id, ordered_at, _ in orders:
        first_order.setdefault(customer_id, ordered_at.date())
    expected = Counter(
        month_start(first)
        for first in first_order.values()
        if first_cohort <= first < current_month
    )
    rows = query(
        mart_warehouse,
        "select cohort_month, cohort_size, active_customers, retention_rate "
        "from marts.cohort_retention where months_since_acquisition = 0",
    )
    assert {row[0]: row[1] for row in rows} == dict(expected)
    assert sum(row[1] for row in rows) == sum(expected.values()) > 100
    assert all(row[2] == row[1] and row[3] == 1 for row in rows)
    # the oldest cohort is followed to the last month that ended, the newest for one month
    spans = dict(
        query(
            mart_warehouse,
            "select cohort_month, count(*) from marts.cohort_retention group by 1",
        )
    )
    assert spans[first_cohort] == VARS["history_months"]
    assert spans[month_start(MARTS_AS_OF, 1)] == 1
