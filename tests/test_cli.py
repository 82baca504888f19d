"""The command line an analyst and an operator use."""

from __future__ import annotations

import re
import sqlite3
from datetime import date

import pytest
from conftest import use_settings

from crm360.cli import main
from crm360.demo.generator import generate_demo
from crm360.settings import PROJECT_ROOT
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


# `crm360 run` and `crm360 demo`: the environment a user sets, here under tmp_path


def test_run_refuses_a_date_the_dags_cannot_run_before_running_anything(
    tmp_path, monkeypatch, capsys
):
    use_settings(monkeypatch, tmp_path)
    monkeypatch.setenv("CRM360_START_DATE", "2000-01-01")
    assert main(["run", "--date", "1998-06-30"]) == 2
    err = capsys.readouterr().err
    assert "1998-06-30" in err and "start date is 2000-01-01" in err
    assert "Set CRM360_START_DATE to 1998-06-30 or earlier" in err

    monkeypatch.setenv("CRM360_START_DATE", "1990-01-01")
    monkeypatch.setenv("CRM360_DAILY_END_DATE", "1998-06-29")
    assert main(["run", "--date", "1998-06-30"]) == 2
    err = capsys.readouterr().err
    assert "end date is 1998-06-29" in err and "CRM360_DAILY_END_DATE" in err
    # refused before Airflow ran: no metadata database, no run
    assert not (tmp_path / "airflow" / "airflow.db").exists()


@pytest.mark.slow
def test_a_run_that_ran_no_task_is_a_failure_that_says_so(tmp_path, monkeypatch, capsys):
    use_settings(monkeypatch, tmp_path).source_dir.mkdir(parents=True)
    monkeypatch.setenv("CRM360_START_DATE", "2026-01-01")
    # past the check before the run, as a DAG whose dates the check does not know would be
    monkeypatch.setattr("crm360.cli.check_logical_date", lambda *args: None)

    assert main(["run", "--date", "1998-06-30"]) == 1
    err = capsys.readouterr().err
    assert "crm360_daily ran no task for 1998-06-30" in err
    assert "CRM360_START_DATE" in err


@pytest.mark.slow
def test_a_contract_error_fails_its_task_at_once_and_the_cli_says_why(
    tmp_path, monkeypatch, capsys
):
    settings = use_settings(monkeypatch, tmp_path)
    generate_demo(settings.source_dir, customers=200, seed=3, as_of=date(2026, 11, 1))
    # the sources config points the CRM contacts at an export without the contract's key
    broken = settings.source_dir / "crm_v2" / "contacts_20261030.csv"
    broken.parent.mkdir()
    broken.write_text("last_name,email\n佐藤,sato@example.com\n", encoding="utf-8")
    config = (PROJECT_ROOT / "config" / "sources.yml").read_text(encoding="utf-8")
    assert '"crm/contacts_*.csv"' in config
    (tmp_path / "sources.yml").write_text(
        config.replace('"crm/contacts_*.csv"', '"crm_v2/contacts_*.csv"'), encoding="utf-8"
    )
    monkeypatch.setenv("CRM360_SOURCES_CONFIG", str(tmp_path / "sources.yml"))

    assert main(["run", "--date", "2026-11-01"]) == 1

    out, err = capsys.readouterr()
    # progress while it ran: each task as it started and ended
    assert re.search(r"ingest_crm +started", out)
    assert re.search(r"ingest_crm +failed on try 1 of 3 after [\d.]+ s, not retried", out)
    assert re.search(r"run_report +succeeded", out)
    # why: the failed task, its error, what did not run, and the run report
    assert "crm360_daily failed for 2026-11-01" in err
    assert re.search(r"ingest_crm failed on try 1 of 3 .*not retried:\n +ContractError: ", err)
    assert f"{broken}: required column(s) contact_id" in err
    # the other sources still load; the required CRM's failure stops the run before dbt
    assert re.search(r"ingest_shop +succeeded", out)
    assert re.search(
        r"check_sources failed on try 1 of 3 .*not retried:\n +RequiredSourceFailed", err
    )
    assert re.search(r"not run, as a task before them failed: .*dbt_staging", err)
    assert "Run report of crm360_daily (ops.run_reports):" in err
    assert "failed at ingest_crm" in err
    with sqlite3.connect(tmp_path / "airflow" / "airflow.db") as db:
        tries = db.execute(
            "select state, try_number from task_instance where task_id = 'ingest_crm'"
        ).fetchall()
    assert tries == [("failed", 1)]  # one attempt: no retry


def test_demo_leaves_a_folder_it_did_not_make_untouched(tmp_path, monkeypatch, capsys):
    settings = use_settings(monkeypatch, tmp_path)
    users_file = settings.source_dir / "crm" / "contacts_20261031.csv"
    users_file.parent.mkdir(parents=True)
    users_file.write_text("contact_id\nC1\n", encoding="utf-8")

    assert main(["demo", "--customers", "50"]) == 2

    err = capsys.readouterr().err
    assert f"{settings.source_dir} (CRM360_SOURCE_DIR)" in err
    assert ".crm360-demo" in err and "Nothing was deleted" in err
    assert [p.relative_to(settings.source_dir) for p in settings.source_dir.rglob("*.csv")] == [
        users_file.relative_to(settings.source_dir)
    ]
    assert users_file.read_text(encoding="utf-8") == "contact_id\nC1\n"
    # nor does `crm360 generate` claim it: writing into it leaves it the user's
    assert main(["generate", "--out", str(settings.source_dir), "--customers", "50"]) == 0
    assert not (settings.source_dir / ".crm360-demo").exists()


def test_demo_leaves_a_warehouse_it_did_not_make_untouched(tmp_path, monkeypatch, capsys):
    settings = use_settings(monkeypatch, tmp_path)
    settings.warehouse.parent.mkdir(parents=True)
    settings.warehouse.write_bytes(b"a user's warehouse")

    assert main(["demo", "--customers", "50"]) == 2

    assert f"{settings.warehouse} (CRM360_WAREHOUSE)" in capsys.readouterr().err
    assert settings.warehouse.read_bytes() == b"a user's warehouse"


def test_demo_makes_again_what_an_earlier_demo_made(tmp_path, monkeypatch, capsys):
    settings = use_settings(monkeypatch, tmp_path)
    generate_demo(settings.source_dir, customers=50, seed=1, as_of=date(2026, 11, 1))
    stale = settings.source_dir / "crm" / "contacts_20200101.csv"
    stale.write_text("contact_id\nOLD\n", encoding="utf-8")
    for db in (settings.warehouse, settings.published_warehouse):
        db.parent.mkdir(parents=True, exist_ok=True)
        (db.parent / ".crm360-demo").touch()
        db.write_bytes(b"an earlier demo's warehouse")
    (settings.export_dir / "audience").mkdir(parents=True)
    (settings.export_dir / ".crm360-demo").touch()
    ran = []
    monkeypatch.setattr("crm360.cli.run_with_progress", lambda *args: ran.append(args))

    assert main(["demo", "--customers", "60"]) == 1  # the stub above "failed" the run

    assert ran and not stale.exists()
    assert (settings.source_dir / ".crm360-demo").exists()
    assert (settings.source_dir / "shop" / "orders.sqlite").exists()
    assert not settings.warehouse.exists() and not settings.published_warehouse.exists()
    assert [p.name for p in settings.export_dir.iterdir()] == [".crm360-demo"]
    assert "Generating demo sources for 60 people" in capsys.readouterr().out


def test_each_failed_tasks_error_is_read_from_its_last_attempt_in_the_log():
    from crm360.airflow_env import task_errors

    def attempt(task_id: str, *trace: str) -> list[str]:
        return [
            f"2026-11-01T00:00:01Z [info ] [DAG TEST] starting task_id={task_id} map_index=-1",
            "2026-11-01T00:00:02Z [error] Task failed with exception [task]",
            "Traceback (most recent call last):",
            '  File "/work/main/crm360/pipeline.py", line 33, in ingest_source',
            "    results = load_source(source, con, settings.source_dir, as_of, run_id)",
            "              ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^",
            *trace,
            f"2026-11-01T00:00:03Z [info ] [DAG TEST] end task task_id={task_id} map_index=-1",
        ]

    log = [
        *attempt("ingest_support", "OSError: connection reset by the helpdesk API"),
        *attempt("ingest_support", "ingestion.support.SourceApiError: HTTP 500 from /tickets"),
        *attempt(
            "dbt_build",
            "KeyError: 'as_of'",
            "",
            "The above exception was the direct cause of the following exception:",
            "",
            "Traceback (most recent call last):",
            '  File "/work/main/crm360/dbt.py", line 80, in run_dbt_as_of',
            "    raise DbtError(message) from err",
            "crm360.dbt.DbtError: dbt build failed (exit 1):",
            "  customer_rfm: Binder Error: column x not found",
        ),
    ]
    assert task_errors(line + "\n" for line in log) == {
        "ingest_support": "SourceApiError: HTTP 500 from /tickets",
        "dbt_build": "DbtError: dbt build failed (exit 1):\n  customer_rfm: Binder Error: column x not found",
    }


def test_check_names_each_configuration_problem_and_run_refuses_to_start(
    tmp_path, monkeypatch, capsys
):
    settings = use_settings(monkeypatch, tmp_path)
    settings.source_dir.mkdir(parents=True)
    assert main(["check"]) == 0
    assert "configuration ok" in capsys.readouterr().out

    (tmp_path / "sources.yml").write_text(
        'sources:\n  crm:\n    contacts:\n      files: "crm/*.csv"\n      colums: {顧客ID: contact_id}\n'
        '  shop:\n    url: "mysql://crm@db/shop"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("CRM360_SOURCES_CONFIG", str(tmp_path / "sources.yml"))
    assert main(["check"]) == 2
    err = capsys.readouterr().err
    assert "line 5: sources.crm.contacts.colums: unknown key; did you mean 'columns'?" in err
    text = (tmp_path / "sources.yml").read_text(encoding="utf-8")
    (tmp_path / "sources.yml").write_text(text.replace("colums", "columns"), encoding="utf-8")
    assert main(["check"]) == 2
    assert "line 7: sources.shop.url: unsupported database 'mysql'" in capsys.readouterr().err

    assert main(["run", "--date", "2026-11-01"]) == 2
    assert "invalid configuration, nothing was run" in capsys.readouterr().err
    assert not settings.warehouse.exists()
    assert not (tmp_path / "airflow" / "airflow.db").exists()
