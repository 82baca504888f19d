"""The command line an analyst and an operator use."""

from __future__ import annotations

import pytest

from crm360.cli import main
from crm360.warehouse import connect, publish_read_only_copy


def test_sql_prints_csv_read_only(tmp_path, monkeypatch, capsys):
    warehouse = tmp_path / "w.duckdb"
    with connect(warehouse) as con:
        con.execute("create table t as select 1 as x, '佐藤' as name")
    monkeypatch.setenv("CRM360_WAREHOUSE", str(warehouse))
    monkeypatch.setenv("CRM360_PUBLISHED_WAREHOUSE", str(tmp_path / "published" / "w.duckdb"))

    assert main(["sql", "--csv", "select * from t"]) == 0
    assert capsys.readouterr().out == "x,name\n1,佐藤\n"
    with pytest.raises(Exception, match="read-only"):
        main(["sql", "drop table t"])


def test_sql_reads_the_published_copy_unless_live(tmp_path, monkeypatch, capsys):
    warehouse, published = tmp_path / "w.duckdb", tmp_path / "published" / "w.duckdb"
    with connect(warehouse) as con:
        con.execute("create table t as select 'published' as state")
    publish_read_only_copy(warehouse, published)
    with connect(warehouse) as con:
        con.execute("create or replace table t as select 'in progress' as state")
    monkeypatch.setenv("CRM360_WAREHOUSE", str(warehouse))
    monkeypatch.setenv("CRM360_PUBLISHED_WAREHOUSE", str(published))

    assert main(["sql", "--csv", "select state from t"]) == 0
    assert capsys.readouterr().out == "state\npublished\n"
    assert main(["sql", "--csv", "--live", "select state from t"]) == 0
    assert capsys.readouterr().out == "state\nin progress\n"


def test_generate_writes_the_sources(tmp_path, capsys):
    assert main(["generate", "--out", str(tmp_path), "--customers", "50"]) == 0
    assert list((tmp_path / "crm").glob("contacts_*.csv"))
    assert (tmp_path / "shop" / "orders.sqlite").exists()
    assert '"crm_contacts":' in capsys.readouterr().out


def test_dbt_manifest_writes_the_manifest_the_model_mode_dag_reads(tmp_path, monkeypatch, capsys):
    import json

    monkeypatch.setenv("CRM360_DBT_TARGET_DIR", str(tmp_path / "target"))
    assert main(["dbt-manifest"]) == 0
    path = tmp_path / "target" / "manifest.json"
    assert capsys.readouterr().out.strip() == str(path)
    nodes = json.loads(path.read_text(encoding="utf-8"))["nodes"]
    assert "model.crm360.customer_360" in nodes
