"""End to end: generated sources -> real Airflow DAG run -> marts, quality results, audience file.

Expected values are computed here, independently, from the generated source files with the
standard library, and compared with what the pipeline built.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import sqlite3
import unicodedata
from collections import defaultdict
from datetime import UTC, date, datetime, time

import pytest
from conftest import make_settings

from crm360.cli import run_dag
from crm360.demo.generator import generate_demo
from crm360.warehouse import connect

pytestmark = pytest.mark.slow

AS_OF = date(2026, 11, 1)
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def norm_email(value):
    value = unicodedata.normalize("NFKC", value or "").strip().lower()
    return value or None


def parses(value, parse):
    try:
        parse(value)
        return True
    except ValueError:
        return False


def valid_contact(row):
    """The contract's rules, restated independently."""
    return (
        row["contact_id"]
        and "\ufffd" not in "".join(v or "" for v in row.values())
        and (not row["birth_date"] or parses(row["birth_date"], date.fromisoformat))
        and row["email_opt_in"] in ("true", "false")
        and row["do_not_contact"] in ("true", "false")
        and parses(row["created_at"], datetime.fromisoformat)
        and parses(row["updated_at"], datetime.fromisoformat)
    )


def read_contacts(source_dir):
    """The newest valid version of each contact across the full export and the deltas."""
    contacts = {}
    for path in sorted((source_dir / "crm").glob("contacts_*.csv")):
        data = path.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = (
                data.decode("cp932")
                if data.decode("utf-8", "replace").count("\ufffd") > 5
                else data.decode("utf-8", "replace")
            )
        seen = set()
        for row in csv.DictReader(text.splitlines()):
            if not valid_contact(row) or row["contact_id"] in seen:
                seen.add(row["contact_id"])
                continue
            seen.add(row["contact_id"])
            current = contacts.get(row["contact_id"])
            if current is None or datetime.fromisoformat(
                row["updated_at"]
            ) >= datetime.fromisoformat(current["updated_at"]):
                contacts[row["contact_id"]] = row
    return contacts


def expected_customers(source_dir, as_of):
    """Customer anchor -> facts, by the documented linking rules, from the raw source files."""
    contacts = read_contacts(source_dir)
    contact_by_email = {}
    for contact_id in sorted(contacts):
        email = norm_email(contacts[contact_id]["email"])
        if email:
            contact_by_email.setdefault(email, contact_id)

    db = sqlite3.connect(source_dir / "shop" / "orders.sqlite")
    owner, shop_email = {}, {}
    for shop_id, contact_id, email, created_at in db.execute(
        "select customer_id, contact_id, email, created_at from customers order by customer_id"
    ):
        if not parses(created_at, datetime.fromisoformat):
            continue  # quarantined
        if contact_id in contacts:
            owner[shop_id] = f"crm:{contact_id}"
        elif norm_email(email) in contact_by_email:
            owner[shop_id] = f"crm:{contact_by_email[norm_email(email)]}"
        else:
            owner[shop_id] = f"shop:{shop_id}"
        shop_email.setdefault(owner[shop_id], norm_email(email))

    cutoff = datetime.combine(as_of, time(), tzinfo=UTC)
    revenue, orders, last = defaultdict(int), defaultdict(int), {}
    line_totals = dict(
        db.execute(
            "select order_id, sum(quantity * unit_price) from order_items where quantity >= 1 group by 1"
        )
    )
    for order_id, shop_id, ordered_at, status in db.execute(
        "select order_id, customer_id, ordered_at, status from orders"
    ):
        at = datetime.fromisoformat(ordered_at).astimezone(UTC)
        if status != "completed" or at >= cutoff:
            continue
        anchor = owner[shop_id]
        revenue[anchor] += line_totals.get(order_id, 0)
        orders[anchor] += 1
        last[anchor] = max(last.get(anchor, at), at)

    customers = {}
    for anchor in {f"crm:{c}" for c in contacts} | set(owner.values()):
        contact = contacts.get(anchor.removeprefix("crm:")) if anchor.startswith("crm:") else None
        email = norm_email(contact["email"]) if contact else None
        email = email or shop_email.get(anchor)
        contactable = bool(
            contact
            and email
            and EMAIL.fullmatch(email)
            and contact["email_opt_in"] == "true"
            and contact["do_not_contact"] == "false"
        )
        dormant = anchor in last and (as_of - last[anchor].date()).days > 180
        customer_id = "cus_" + hashlib.md5(anchor.encode()).hexdigest()[:16]
        customers[customer_id] = {
            "revenue": revenue[anchor],
            "orders": orders[anchor],
            "dormant": dormant,
            "contactable": contactable,
        }
    return customers


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    settings = make_settings(root)
    counts = generate_demo(settings.source_dir, customers=400, seed=7, as_of=AS_OF)
    ok, log_file = run_dag(settings, AS_OF, airflow_home=root / "airflow")
    assert ok, log_file.read_text(encoding="utf-8")[-4000:]
    return settings, counts, root


def test_loads_reconcile_with_the_sources(demo_run):
    settings, counts, _ = demo_run
    with connect(settings.warehouse, read_only=True) as con:
        loads = con.execute(
            "select source || '_' || object, rows_read, rows_loaded, rows_quarantined "
            "from raw._loads"
        ).fetchall()
    read: dict[str, int] = defaultdict(int)
    for name, rows, _, _ in loads:
        read[name] += rows
    assert read == counts
    assert all(rows == loaded + quarantined for _, rows, loaded, quarantined in loads)


def test_customer_360_matches_independent_computation(demo_run):
    settings, _, _ = demo_run
    expected = expected_customers(settings.source_dir, AS_OF)
    with connect(settings.warehouse, read_only=True) as con:
        rows = con.execute(
            "select customer_id, total_revenue, order_count, is_dormant, is_email_contactable, "
            "as_of_date from marts.customer_360"
        ).fetchall()
    assert len(rows) == len(expected)
    actual = {
        cid: {"revenue": int(rev), "orders": n, "dormant": dormant, "contactable": contactable}
        for cid, rev, n, dormant, contactable, _ in rows
    }
    assert actual == expected
    assert {row[5] for row in rows} == {AS_OF}


def test_rfm_scores_every_buyer(demo_run):
    settings, _, _ = demo_run
    with connect(settings.warehouse, read_only=True) as con:
        buyers = con.execute(
            "select count(*) from marts.customer_360 where order_count > 0"
        ).fetchone()[0]
        rfm = con.execute(
            "select count(*), count(rfm_segment), min(r_score), max(r_score) "
            "from marts.customer_rfm"
        ).fetchone()
    assert buyers > 0
    assert rfm == (buyers, buyers, 1, 5)


def test_dormant_audience_file_and_manifest(demo_run):
    settings, _, _ = demo_run
    expected = expected_customers(settings.source_dir, AS_OF)
    audience_dir = settings.export_dir / "dormant_reactivation"
    latest = json.loads((audience_dir / "latest.json").read_text(encoding="utf-8"))
    folder = audience_dir / latest["path"]
    csv_path = folder / "dormant_reactivation.csv"
    with csv_path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))

    want = {cid for cid, c in expected.items() if c["dormant"] and c["contactable"]}
    assert want, "the demo data must contain dormant, contactable customers"
    assert {r["customer_id"] for r in rows} == want
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["row_count"] == len(rows) == latest["row_count"]
    assert manifest["files"][0]["sha256"] == hashlib.sha256(csv_path.read_bytes()).hexdigest()
    assert manifest["quality"]["status"] in ("passed", "warning")
    # nobody who is not contactable by e-mail is ever exported
    assert not {r["customer_id"] for r in rows} - {
        c for c, v in expected.items() if v["contactable"]
    }


def test_published_copy_holds_the_run(demo_run):
    settings, _, _ = demo_run
    query = "select count(*), sum(total_revenue) from marts.customer_360"
    with connect(settings.warehouse, read_only=True) as con:
        live = con.execute(query).fetchone()
    with connect(settings.published_warehouse, read_only=True) as con:
        assert con.execute(query).fetchone() == live


def test_run_report_is_stored(demo_run):
    settings, counts, _ = demo_run
    with connect(settings.warehouse, read_only=True) as con:
        rows = con.execute("select status, report from ops.run_reports").fetchall()
    assert len(rows) == 1
    status, report = rows[0][0], json.loads(rows[0][1])
    assert status == "success"
    assert report["sources"]["crm"]["rows_read"] == counts["crm_contacts"]
    assert report["sources"]["web"]["rows_quarantined"] == 3
    assert report["marts"]["customer_360"] > 0
    assert report["quality"]["status"] in ("passed", "warning")
    assert report["exports"]["audiences"][0]["audience"] == "dormant_reactivation"
    assert set(report["stage_seconds"]) >= {
        "ingest_crm",
        "dbt_build",
        "quality_gate",
        "export_audiences",
    }


def test_quality_results_are_stored_and_computed(demo_run):
    settings, _, _ = demo_run
    with connect(settings.warehouse, read_only=True) as con:
        results = con.execute(
            "select severity, success, computed, element_count from quality.validation_results"
        ).fetchall()
    assert len(results) == 13
    assert all(computed for _, _, computed, _ in results)
    assert all(success for severity, success, _, _ in results if severity == "critical")


def test_critical_failure_blocks_export_and_keeps_previous_files(demo_run):
    """Runs last in this module: it breaks the CRM export and runs the DAG again."""
    settings, _, root = demo_run
    audience_dir = settings.export_dir / "dormant_reactivation"
    before = {p: p.read_bytes() for p in audience_dir.rglob("*") if p.is_file()}

    # An upstream export that went wrong: a full re-export in which a third of the e-mails
    # are garbage, dated the next day so the next run picks it up.
    rows = list(read_contacts(settings.source_dir).values())
    for i, row in enumerate(rows):
        row["updated_at"] = "2026-11-01T08:00:00+09:00"
        if i % 3 == 0:
            row["email"] = f"broken-export-{i}"
    path = settings.source_dir / "crm" / "contacts_20261101.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    published_before = settings.published_warehouse.read_bytes()
    ok, log_file = run_dag(settings, date(2026, 11, 2), airflow_home=root / "airflow")

    assert not ok
    log = log_file.read_text(encoding="utf-8")
    assert "quality gate failed, nothing exported" in log
    assert "expect_column_values_to_match_regex on marts.customer_360.email" in log
    after = {p: p.read_bytes() for p in audience_dir.rglob("*") if p.is_file()}
    assert after == before
    assert (
        settings.published_warehouse.read_bytes() == published_before
    )  # analysts keep the last good state
    with connect(settings.warehouse, read_only=True) as con:
        failed = con.execute(
            "select count(*) from quality.validation_results "
            "where not success and severity = 'critical' and column_name = 'email'"
        ).fetchone()[0]
    assert failed == 1
    with connect(settings.warehouse, read_only=True) as con:
        statuses = [
            r[0]
            for r in con.execute(
                "select status from ops.run_reports order by created_at"
            ).fetchall()
        ]
    assert statuses == ["success", "failed at quality_gate"]
