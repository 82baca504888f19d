"""A company's own exports, in their own shape, through the real daily DAG to audience files.

The company: a CRM export in CP932 with Japanese headers (顧客ID, 姓, メルマガ許可 …), consent as
はい/いいえ, slash dates in JST, a third of the contacts without e-mail; an orders table of its own
shape, `juchu(order_no, kaiin_id, order_date, total_yen, status)`, with status codes in Japanese;
no helpdesk, web analytics, e-mail tool, social or spend data. Only the sources config differs
from the shipped set-up (SOURCES_CONFIG below is every line the company writes).

Expected figures are computed here from the company's files with the standard library.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import textwrap
from collections import defaultdict
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from conftest import make_settings
from postgres_server import copy_table, postgres_server

from crm360 import pipeline
from crm360.cli import run_pipeline
from crm360.demo.generator import generate_demo
from crm360.warehouse import connect
from tests.privacy.scan import find_values

pytestmark = pytest.mark.slow

AS_OF = date(2026, 11, 1)
HEADERS = {
    "contact_id": "顧客ID", "last_name": "姓", "first_name": "名", "last_name_kana": "セイ",
    "first_name_kana": "メイ", "email": "メールアドレス", "phone": "電話番号",
    "postal_code": "郵便番号", "prefecture": "都道府県", "birth_date": "生年月日",
    "email_opt_in": "メルマガ許可", "do_not_contact": "連絡不可", "deletion_requested": "削除依頼",
    "created_at": "登録日時", "updated_at": "更新日時",
}  # fmt: skip
STATUS = {"completed": "完了", "cancelled": "キャンセル", "shipped": "発送済"}

SOURCES_CONFIG = """
sources:
  crm:
    contacts:
      files: "crm/kokyaku_*.csv"
      encoding: cp932
      columns: {顧客ID: contact_id, 姓: last_name, 名: first_name, セイ: last_name_kana,
                メイ: first_name_kana, メールアドレス: email, 電話番号: phone, 郵便番号: postal_code,
                都道府県: prefecture, 生年月日: birth_date, メルマガ許可: email_opt_in,
                連絡不可: do_not_contact, 削除依頼: deletion_requested, 登録日時: created_at,
                更新日時: updated_at}
      formats: {birth_date: "%Y/%m/%d", created_at: "%Y/%m/%d %H:%M:%S",
                updated_at: "%Y/%m/%d %H:%M:%S"}
  shop:
    url: "sqlite:///{source_dir}/kikan/juchu.sqlite"
    connection_id: kikan_db
    customers:
      query: >-
        select kaiin_id as customer_id, cast(kaiin_id as text) as contact_id,
          min(order_date) as created_at, min(order_date) as updated_at
        from juchu group by kaiin_id
    orders:
      query: select order_no, kaiin_id, order_date, status, order_date as updated_at from juchu
      columns: {order_no: order_id, kaiin_id: customer_id, order_date: ordered_at}
      values: {status: {完了: completed, キャンセル: cancelled}}
    order_items:
      query: >-
        select order_no as order_item_id, order_no as order_id, 1 as product_id, 1 as quantity,
          total_yen as unit_price, order_date as updated_at
        from juchu
    products:
      query: >-
        select 1 as product_id, 'ALL' as sku, '全商品' as product_name, '全商品' as category,
          0 as list_price, 0 as unit_cost, '2000-01-01 00:00:00' as updated_at
    subscriptions: {enabled: false}
    returns: {enabled: false}
"""


def _demo_contacts(demo: Path) -> dict[str, dict]:
    """The newest valid version of each demo contact (the bad rows the demo injects left out)."""
    contacts: dict[str, dict] = {}
    for path in sorted((demo / "crm").glob("contacts_*.csv")):
        data = path.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("cp932", errors="replace")
        for row in csv.DictReader(text.splitlines()):
            if not row["contact_id"].startswith("C") or "\ufffd" in "".join(row.values()):
                continue
            try:
                datetime.fromisoformat(row["updated_at"])
            except ValueError:
                continue
            current = contacts.get(row["contact_id"])
            if current is None or row["updated_at"] >= current["updated_at"]:
                contacts[row["contact_id"]] = row
    return contacts


def _jst(iso: str) -> str:
    return datetime.fromisoformat(iso).strftime("%Y/%m/%d %H:%M:%S")


def write_company_exports(demo: Path, folder: Path) -> dict:
    """The company's files, made from demo data: returns the expected figures."""
    (folder / "crm").mkdir(parents=True)
    (folder / "kikan").mkdir()
    contacts = _demo_contacts(demo)
    yes_no = {"true": "はい", "false": "いいえ", "": ""}
    rows, opted_in, consent, personal = [], {}, {}, {}
    for n, (contact_id, row) in enumerate(sorted(contacts.items())):
        kaiin = str(int(contact_id[1:]))
        out = {**row, "contact_id": kaiin, "email": "" if n % 3 == 0 else row["email"]}
        for column in ("email_opt_in", "do_not_contact", "deletion_requested"):
            out[column] = yes_no[row[column]]
        out["birth_date"] = row["birth_date"].replace("-", "/")
        out["created_at"], out["updated_at"] = _jst(row["created_at"]), _jst(row["updated_at"])
        rows.append({HEADERS[k]: out[k] for k in HEADERS})
        opted_in[kaiin] = row["email_opt_in"] == "true"
        personal[kaiin] = (
            row["deletion_requested"] == "true",
            {v for v in (out["email"], row["phone"], row["last_name"] + row["first_name"],
                         f"{row['last_name']} {row['first_name']}") if v and len(v) >= 3},
        )  # fmt: skip
        # customer_360's consent: opted in, and neither do-not-contact nor deletion requested
        consent[kaiin] = opted_in[kaiin] and {row["do_not_contact"], row["deletion_requested"]} <= {
            "false",
            "",
        }
    with open(folder / "crm" / "kokyaku_20261031.csv", "w", encoding="cp932", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(HEADERS.values()))
        writer.writeheader()
        writer.writerows(rows)

    with sqlite3.connect(demo / "shop" / "orders.sqlite") as shop:
        orders = shop.execute(
            """select o.order_id, c.contact_id, o.ordered_at, o.status,
                   sum(i.quantity * i.unit_price)
               from orders as o join customers as c using (customer_id)
               join order_items as i using (order_id)
               where c.contact_id like 'C%' group by 1, 2, 3, 4 order by 1"""
        ).fetchall()
    juchu = [
        (order_id, int(contact[1:]), datetime.fromisoformat(at).strftime("%Y-%m-%d %H:%M:%S"),
         total, STATUS[status])
        for order_id, contact, at, status, total in orders
        if status in STATUS and str(int(contact[1:])) in opted_in
    ]  # fmt: skip
    with sqlite3.connect(folder / "kikan" / "juchu.sqlite") as db:
        db.execute("create table juchu (order_no integer primary key, kaiin_id integer, "
                   "order_date text, total_yen integer, status text)")  # fmt: skip
        db.executemany("insert into juchu values (?, ?, ?, ?, ?)", juchu)
    revenue, completed = defaultdict(int), defaultdict(int)
    for _, kaiin, _, total, status in juchu:
        if status == "完了":
            revenue[str(kaiin)] += total
            completed[str(kaiin)] += 1
    return {
        "contacts": len(rows),
        "opted_in": opted_in,
        "personal": personal,
        "consent": consent,
        "revenue": dict(revenue),
        "orders": dict(completed),
        "juchu": juchu,
        "unknown_status": sum(1 for row in juchu if row[4] == "発送済"),
    }


@pytest.fixture(scope="module")
def company_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("own-data")
    settings = make_settings(root)
    generate_demo(root / "demo", customers=300, seed=11, as_of=AS_OF)
    expected = write_company_exports(root / "demo", settings.source_dir)
    config = root / "sources.yml"
    config.write_text(textwrap.dedent(SOURCES_CONFIG), encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CRM360_SOURCES_CONFIG", str(config))
        ok, log_file = run_pipeline(settings, AS_OF, airflow_home=root / "airflow")
    assert ok, log_file.read_text(encoding="utf-8")[-4000:]
    return settings, expected, root


def test_every_company_row_is_loaded_or_quarantined_with_a_reason(company_run):
    settings, expected, _ = company_run
    with connect(settings.warehouse, read_only=True) as con:
        loads = dict(
            con.execute(
                "select source || '.' || object, sum(rows_read) from raw._loads group by 1"
            ).fetchall()
        )
        quarantined = con.execute(
            "select source || '.' || object, reason from raw._quarantine"
        ).fetchall()
        consent = dict(
            con.execute("select contact_id, email_opt_in from raw.crm_contacts").fetchall()
        )
    assert loads["crm.contacts"] == expected["contacts"]
    assert loads["shop.orders"] == len(expected["juchu"])
    # the one status code the mapping does not know is kept aside, named
    assert (
        quarantined
        == [("shop.orders", "unknown value in status: 発送済")] * expected["unknown_status"]
    )
    assert consent == {k: "true" if v else "false" for k, v in expected["opted_in"].items()}


def test_customer_360_holds_the_company_revenue_and_consent(company_run):
    settings, expected, _ = company_run
    with connect(settings.warehouse, read_only=True) as con:
        rows = con.execute(
            "select contact_id, order_count, total_revenue, is_email_opted_in, "
            "email is not null from marts.customer_360 where contact_id is not null"
        ).fetchall()
    assert len(rows) == expected["contacts"]
    for contact_id, orders, revenue, opted_in, _ in rows:
        assert orders == expected["orders"].get(contact_id, 0), contact_id
        assert float(revenue) == expected["revenue"].get(contact_id, 0), contact_id
        assert opted_in == expected["consent"][contact_id], contact_id
    assert sum(1 for *_, has_email in rows if not has_email) >= expected["contacts"] // 3


def test_audience_files_are_published(company_run):
    settings, _, _ = company_run
    pointers = sorted(settings.export_dir.glob("*/latest.json"))
    assert pointers, "no audience was exported"
    for pointer in pointers:
        latest = json.loads(pointer.read_text(encoding="utf-8"))
        assert (pointer.parent / latest["path"]).exists()


def test_the_run_report_names_the_sources_the_company_does_not_have(company_run):
    settings, _, _ = company_run
    with connect(settings.warehouse, read_only=True) as con:
        report = json.loads(
            con.execute(
                "select report from ops.run_reports where dag_id = 'crm360_daily'"
            ).fetchone()[0]
        )
    skipped = report["skipped_sources"]
    assert set(skipped) == {"support", "web", "email", "social", "spend"}
    assert skipped["web"]["reason"] == "not in the sources config"
    assert any("web_session_count" in item for item in skipped["web"]["left_empty"])
    assert report["status"] == "success"


def test_the_same_mapping_reads_the_orders_from_postgresql(company_run, tmp_path):
    """The company's database on PostgreSQL: its own SQL in the queries, the same raw rows."""
    settings, expected, root = company_run
    with postgres_server() as url:
        copy_table(
            settings.source_dir / "kikan" / "juchu.sqlite", "juchu", url,
            "order_no integer primary key, kaiin_id integer, order_date timestamp, "
            "total_yen integer, status text",
        )  # fmt: skip
        config = SOURCES_CONFIG.replace(
            "'2000-01-01 00:00:00' as updated_at", "timestamp '2000-01-01' as updated_at"
        )
        path = tmp_path / "sources.yml"
        path.write_text(textwrap.dedent(config), encoding="utf-8")
        pg = make_settings(tmp_path / "pg")
        pg.source_dir.mkdir(parents=True)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("CRM360_SOURCES_CONFIG", str(path))
            patch.setenv("AIRFLOW_CONN_KIKAN_DB", url)
            as_of = datetime.combine(AS_OF, datetime.min.time(), tzinfo=UTC)
            result = pipeline.ingest_source("shop", "pg-run", as_of, pg)
    assert result["skipped"] is None
    for table, columns in (
        ("shop_orders", "order_id, customer_id, ordered_at, status, updated_at"),
        ("shop_order_items", "order_item_id, order_id, quantity, unit_price, updated_at"),
        ("shop_customers", "customer_id, contact_id, created_at"),
    ):
        query = f"select {columns} from raw.{table} order by all"
        with connect(settings.warehouse, read_only=True) as con:
            from_sqlite = con.execute(query).fetchall()
        with connect(pg.warehouse, read_only=True) as con:
            from_postgres = con.execute(query).fetchall()
        assert from_postgres == from_sqlite, table
    assert os.environ.get("AIRFLOW_CONN_KIKAN_DB") is None


def test_who_asked_for_deletion_is_in_nothing_the_run_wrote(company_run):
    """削除依頼 = はい in the company's own CP932 export (a third without e-mail, two sources
    only): the people are erased in that first run; their e-mail, phone and name are in no
    file under the run's folder but the company's own exports."""
    settings, expected, root = company_run
    asked = [values for wants, values in expected["personal"].values() if wants]
    kept = {v for wants, values in expected["personal"].values() if not wants for v in values}
    secret = {v for values in asked for v in values} - kept
    assert len(asked) >= 3 and len(secret) >= 3 * len(asked)
    with connect(settings.warehouse, read_only=True) as con:
        erased = con.execute("select count(*) from privacy.erasures").fetchone()[0]
    assert erased == len(asked)
    skip = (settings.source_dir, settings.dbt_target_dir, root / "demo")
    assert find_values(root, secret, skip=skip) == {}
