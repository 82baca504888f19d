"""A shop with five customers, a CRM and nothing else, through the real daily and audience
DAGs: every model builds, LTV falls back to history with its reason, the run succeeds."""

from __future__ import annotations

import math
from datetime import date

import pytest
from conftest import make_settings

from crm360.cli import run_pipeline
from crm360.demo.generator import generate_demo
from crm360.warehouse import connect

pytestmark = pytest.mark.slow

AS_OF = date(2026, 11, 1)
CONFIG = """
sources:
  crm:
    contacts: {files: "crm/contacts_*.csv"}
  shop:
    url: "sqlite:///{source_dir}/shop/orders.sqlite"
"""


def test_five_customers_run_through_the_dags(tmp_path, monkeypatch):
    settings = make_settings(tmp_path)
    generate_demo(settings.source_dir, customers=5, seed=3, as_of=AS_OF)
    (tmp_path / "sources.yml").write_text(CONFIG, encoding="utf-8")
    monkeypatch.setenv("CRM360_SOURCES_CONFIG", str(tmp_path / "sources.yml"))

    ok, log_file = run_pipeline(settings, AS_OF, airflow_home=tmp_path / "airflow")

    assert ok, log_file.read_text(encoding="utf-8")[-4000:]
    with connect(settings.warehouse, read_only=True) as con:
        customers = con.execute("select count(*) from marts.customer_360").fetchone()[0]
        ltv = con.execute(
            "select predicted_revenue_ltv, ltv_method, ltv_fallback_reason "
            "from marts.customer_ltv where predicted_revenue_ltv is not null"
        ).fetchall()
        fits = dict(con.execute("select model_name, fit_note from marts.ltv_model_fits").fetchall())
        status = con.execute(
            "select status from ops.run_reports where dag_id = 'crm360_daily'"
        ).fetchone()[0]
    assert 5 <= customers <= 12  # people, their shop accounts and the demo's extra records
    assert ltv and all(math.isfinite(float(value)) for value, _, _ in ltv)
    # too few buyers to fit a model: each buyer gets their history, and the mart says why
    assert {method for _, method, _ in ltv} == {"historical"}
    assert all(reason for *_, reason in ltv)
    assert "needs at least" in fits["bg_nbd"]
    assert status == "success"
    assert list(settings.export_dir.glob("*/latest.json"))
