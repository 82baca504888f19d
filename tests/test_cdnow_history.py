"""A public purchase log at its own dates, end to end: the CDNOW sample that `lifetimes` ships
(2,357 customers, first purchases in the first quarter of 1997, dollar amounts with cents) as a
US shop's database, mapped by configuration, run through the daily DAG as of 1997-10-01 with
the shipped settings. The LTV mart must reproduce the published fits (Fader, Hardie & Lee
2005: BG/NBD r 0.243, alpha 4.414, a 0.793, b 2.426; Gamma-Gamma p 6.25, q 3.74, v 15.44)
within 0.5%.
"""

from __future__ import annotations

import sqlite3
import textwrap
from datetime import date
from importlib.resources import files

import pytest
from conftest import make_settings

from crm360.cli import run_pipeline
from crm360.warehouse import connect

pytestmark = pytest.mark.slow

AS_OF = date(1997, 10, 1)  # orders before it: the calibration period ends 1997-09-30
PUBLISHED = {
    "bg_nbd": {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426},
    "gamma_gamma": {"p": 6.25, "q": 3.74, "v": 15.44},
}

SOURCES_CONFIG = """
sources:
  shop:
    url: "sqlite:///{source_dir}/cdnow.sqlite"
    timezone: America/New_York
    currency: USD
    customers:
      query: >-
        select customer_no as customer_id, min(purchased_on) as created_at,
          min(purchased_on) as updated_at
        from purchases group by customer_no
    orders:
      query: >-
        select purchase_no as order_id, customer_no as customer_id, purchased_on as ordered_at,
          'completed' as status, purchased_on as updated_at
        from purchases
    order_items:
      query: >-
        select purchase_no as order_item_id, purchase_no as order_id, 1 as product_id,
          1 as quantity, dollars as unit_price, purchased_on as updated_at
        from purchases
    products:
      query: >-
        select 1 as product_id, 'CD' as sku, 'CDs' as product_name, 'music' as category,
          0 as list_price, 0 as unit_cost, '1997-01-01' as updated_at
    subscriptions: {enabled: false}
    returns: {enabled: false}
"""


def write_cdnow_shop(path) -> tuple[int, int]:
    """CDNOW_sample.txt (customer, master id, YYYYMMDD, CDs, dollars) as a shop database of
    ISO dates and dollar amounts; returns (transactions, customers) before AS_OF."""
    lines = (files("lifetimes") / "datasets" / "CDNOW_sample.txt").read_text().splitlines()
    rows = []
    for number, line in enumerate(lines, start=1):
        customer, _, day, _, dollars = line.split()
        rows.append((number, int(customer), f"{day[:4]}-{day[4:6]}-{day[6:]}", float(dollars)))
    with sqlite3.connect(path) as db:
        db.execute("create table purchases (purchase_no integer primary key, "
                   "customer_no integer, purchased_on date, dollars real)")  # fmt: skip
        db.executemany("insert into purchases values (?, ?, ?, ?)", rows)
    before = [row for row in rows if row[2] < AS_OF.isoformat()]
    return len(before), len({row[1] for row in before})


@pytest.fixture(scope="module")
def cdnow_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cdnow")
    settings = make_settings(root)
    settings.source_dir.mkdir(parents=True)
    counts = write_cdnow_shop(settings.source_dir / "cdnow.sqlite")
    config = root / "sources.yml"
    config.write_text(textwrap.dedent(SOURCES_CONFIG), encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CRM360_SOURCES_CONFIG", str(config))
        ok, log_file = run_pipeline(settings, AS_OF, airflow_home=root / "airflow")
    assert ok, log_file.read_text(encoding="utf-8")[-4000:]
    return settings, counts


def test_the_1997_purchases_are_loaded_at_their_own_dates(cdnow_run):
    settings, (transactions, customers) = cdnow_run
    with connect(settings.warehouse, read_only=True) as con:
        loaded = con.execute(
            "select sum(rows_loaded), sum(rows_quarantined) from raw._loads where object = 'orders'"
        ).fetchone()
        span = con.execute(
            "select min(ordered_at)::date, max(ordered_at)::date, count(*) "
            "from staging.stg_shop__orders"
        ).fetchone()
        buyers = con.execute(
            "select count(*), sum(total_revenue) from marts.customer_360 where order_count > 0"
        ).fetchone()
    assert loaded == (transactions, 0)
    assert span == (date(1997, 1, 1), date(1997, 9, 30), transactions)
    assert buyers[0] == customers == 2357
    # dollars with cents arrive as they were written
    assert float(buyers[1]) == pytest.approx(
        sum(
            float(line.split()[4])
            for line in (files("lifetimes") / "datasets" / "CDNOW_sample.txt")
            .read_text()
            .splitlines()
            if line.split()[2] < "19971001"
        ),
        abs=0.005,
    )


def test_the_ltv_mart_reproduces_the_published_fits(cdnow_run):
    settings, _ = cdnow_run
    with connect(settings.warehouse, read_only=True) as con:
        fits = {
            row[0]: dict(
                zip(["model_name", *[d[0] for d in con.description][1:]], row, strict=True)
            )
            for row in con.execute(
                "select model_name, param_r, param_alpha, param_a, param_b, param_p, param_q, "
                "param_v, penalizer_coef, customer_count from marts.ltv_model_fits"
            ).fetchall()
        }
    for model_name, params in PUBLISHED.items():
        for name, value in params.items():
            assert fits[model_name][f"param_{name}"] == pytest.approx(value, rel=0.005), name
        assert fits[model_name]["penalizer_coef"] == 0.0
    assert fits["bg_nbd"]["customer_count"] == 2357
    assert fits["gamma_gamma"]["customer_count"] == 946
