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
import yaml
from conftest import make_settings

from activation.audiences import load_audiences
from activation.publish import in_control_group
from crm360.cli import run_pipeline
from crm360.demo.generator import generate_demo
from crm360.settings import PROJECT_ROOT
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


def blocked_email(email):
    """The placeholder e-mails config/identity.yml blocks, restated."""
    spec = yaml.safe_load((PROJECT_ROOT / "config" / "identity.yml").read_text())
    blocked = spec["blocked_values"]["email"]
    return email in blocked["values"] or any(re.search(p, email) for p in blocked["patterns"])


def unsubscribed_contacts(source_dir, as_of, event_type="unsubscribe", bounce_type=""):
    """Contacts with an e-mail event of this type (and bounce type) before as_of."""
    cutoff = datetime.combine(as_of, time(), tzinfo=UTC)
    out = set()
    for path in (source_dir / "email").glob("events_*.csv"):
        for row in csv.DictReader(path.read_text(encoding="utf-8").splitlines()):
            kind = (row["event_type"], row["bounce_type"] if bounce_type else "")
            if kind == (event_type, bounce_type) and parses(
                row["occurred_at"], datetime.fromisoformat
            ):
                if datetime.fromisoformat(row["occurred_at"]).astimezone(UTC) < cutoff:
                    out.add(row["contact_id"])
    return out


def expected_customers(source_dir, as_of, graph):
    """Customer id -> facts, from the raw source files, grouped by the identity graph
    (record id -> customer id; the graph itself is scored against the truth separately)."""
    contacts = read_contacts(source_dir)
    unsubscribed = unsubscribed_contacts(source_dir, as_of)
    hard_bounced = unsubscribed_contacts(source_dir, as_of, "bounce", "hard")
    db = sqlite3.connect(source_dir / "shop" / "orders.sqlite")
    emails = defaultdict(set)
    for shop_id, email in db.execute("select customer_id, email from customers"):
        if f"shop:{shop_id}" in graph:
            emails[graph[f"shop:{shop_id}"]].add(norm_email(email))

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
        customer = graph[f"shop:{shop_id}"]
        revenue[customer] += line_totals.get(order_id, 0)
        orders[customer] += 1
        last[customer] = max(last.get(customer, at), at)

    contact_of = {graph[f"crm:{c}"]: contacts[c] for c in contacts}
    customers = {}
    for customer in set(graph.values()):
        contact = contact_of.get(customer)
        candidates = set(emails[customer])
        if contact:
            candidates.add(norm_email(contact["email"]))
        has_email = any(e and EMAIL.fullmatch(e) and not blocked_email(e) for e in candidates)
        contactable = bool(
            contact
            and has_email
            and contact["email_opt_in"] == "true"
            and contact["do_not_contact"] == "false"
            and contact["deletion_requested"] == "false"
            and contact["contact_id"] not in unsubscribed
        )
        dormant = customer in last and (as_of - last[customer].date()).days > 180
        customers[customer] = {
            "revenue": revenue[customer],
            "orders": orders[customer],
            "dormant": dormant,
            "contactable": contactable,
            "hard_bounced": bool(contact and contact["contact_id"] in hard_bounced),
        }
    return customers


def identity_graph(settings):
    with connect(settings.warehouse, read_only=True) as con:
        return dict(
            con.execute("select record_id, customer_id from identity.identity_graph").fetchall()
        )


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    settings = make_settings(root)
    counts = generate_demo(settings.source_dir, customers=400, seed=7, as_of=AS_OF)
    ok, log_file = run_pipeline(settings, AS_OF, airflow_home=root / "airflow")
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
    expected = expected_customers(settings.source_dir, AS_OF, identity_graph(settings))
    with connect(settings.warehouse, read_only=True) as con:
        rows = con.execute(
            "select customer_id, total_revenue, order_count, is_dormant, is_email_contactable, "
            "has_hard_bounced, as_of_date from marts.customer_360"
        ).fetchall()
    assert len(rows) == len(expected)
    actual = {
        cid: {"revenue": int(rev), "orders": n, "dormant": dormant, "contactable": contactable,
              "hard_bounced": bounced}
        for cid, rev, n, dormant, contactable, bounced, _ in rows
    }  # fmt: skip
    assert actual == expected
    assert {row[6] for row in rows} == {AS_OF}


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
    expected = expected_customers(settings.source_dir, AS_OF, identity_graph(settings))
    audience = next(a for a in load_audiences() if a.name == "dormant_reactivation")
    audience_dir = settings.export_dir / "dormant_reactivation"
    latest = json.loads((audience_dir / "latest.json").read_text(encoding="utf-8"))
    folder = audience_dir / latest["path"]
    csv_path = folder / "esp.csv"
    with csv_path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))

    want = {
        cid for cid, c in expected.items()
        if c["dormant"] and c["contactable"] and not c["hard_bounced"]
    }  # fmt: skip
    assert want, "the demo data must contain dormant, contactable customers"
    held_back = {
        cid for cid in want
        if in_control_group(audience.name, cid, audience.control_group_percent)
    }  # fmt: skip
    with connect(settings.warehouse, read_only=True) as con:
        capped = {
            cid
            for (cid,) in con.execute(
                "select customer_id from marts.customer_contact_pressure "
                "where send_count_7d >= ? or send_count_30d >= ?",
                [audience.max_contacts_7d, audience.max_contacts_30d],
            ).fetchall()
        }
    exported = {r["customer_id"] for r in rows}
    # nobody who is not dormant and contactable by e-mail (no hard bounce) is ever exported
    assert exported <= want
    assert held_back and exported == want - held_back - capped
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["row_count"] == len(rows) == latest["row_count"]
    assert manifest["counts"]["control_group"] == len(held_back - capped)
    assert manifest["files"][0]["name"] == "esp.csv"
    assert manifest["files"][0]["sha256"] == hashlib.sha256(csv_path.read_bytes()).hexdigest()
    assert manifest["quality"]["status"] in ("passed", "warning")


def test_published_copy_holds_the_run(demo_run):
    settings, _, _ = demo_run
    query = "select count(*), sum(total_revenue) from marts.customer_360"
    with connect(settings.warehouse, read_only=True) as con:
        live = con.execute(query).fetchone()
    with connect(settings.published_warehouse, read_only=True) as con:
        assert con.execute(query).fetchone() == live


def test_run_reports_are_stored(demo_run):
    settings, counts, _ = demo_run
    with connect(settings.warehouse, read_only=True) as con:
        rows = con.execute(
            "select dag_id, run_id, status, report from ops.run_reports order by created_at"
        ).fetchall()
    assert [(dag_id, status) for dag_id, _, status, _ in rows] == [
        ("crm360_daily", "success"),
        ("crm360_audiences", "success"),
    ]
    daily, audiences = json.loads(rows[0][3]), json.loads(rows[1][3])
    assert daily["sources"]["crm"]["rows_read"] == counts["crm_contacts"]
    assert daily["sources"]["web"]["rows_quarantined"] == 3
    assert daily["marts"]["customer_360"] > 0
    assert daily["quality"]["status"] in ("passed", "warning")
    assert set(daily["stage_seconds"]) >= {
        "ingest_crm",
        "dbt_staging",
        "resolve_identities",
        "dbt_build",
        "quality_gate",
        "publish_marts",
    }
    # the audience run exported the marts of the daily run, with that run's gate result
    assert audiences["marts_run_id"] == rows[0][1]
    assert audiences["as_of_date"] == AS_OF.isoformat()
    assert audiences["quality"]["status"] == daily["quality"]["status"]
    assert audiences["quality"]["expectations"] == daily["quality"]["expectations"]
    assert {a["audience"] for a in audiences["exports"]["audiences"]} == {
        a.name for a in load_audiences()
    }
    assert set(audiences["stage_seconds"]) == {"export_audiences"}


def test_quality_results_are_stored_and_computed(demo_run):
    settings, _, _ = demo_run
    with connect(settings.warehouse, read_only=True) as con:
        results = con.execute(
            "select severity, success, computed, element_count from quality.validation_results"
        ).fetchall()
        layers = {
            r[0] for r in con.execute("select layer from quality.validation_results").fetchall()
        }
    assert len(results) >= 35 and layers == {"raw", "staging", "marts"}
    assert all(computed for _, _, computed, _ in results)
    assert all(success for severity, success, _, _ in results if severity == "critical")


def test_critical_failure_blocks_export_and_keeps_previous_files(demo_run):
    """Runs last in this module: it breaks the CRM export and runs the DAG again."""
    settings, _, root = demo_run
    audience_dir = settings.export_dir / "dormant_reactivation"
    before = {p: p.read_bytes() for p in audience_dir.rglob("*") if p.is_file()}

    # An upstream export that went wrong: a full re-export in which every e-mail is garbage,
    # dated the next day so the next run picks it up. Garbage never survives into the golden
    # record, so the customers without a shop account lose their e-mail.
    rows = list(read_contacts(settings.source_dir).values())
    for i, row in enumerate(rows):
        row["updated_at"] = "2026-11-01T08:00:00+09:00"
        row["email"] = f"broken-export-{i}"
    path = settings.source_dir / "crm" / "contacts_20261101.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    published_before = settings.published_warehouse.read_bytes()
    ok, log_file = run_pipeline(settings, date(2026, 11, 2), airflow_home=root / "airflow")

    assert not ok
    log = log_file.read_text(encoding="utf-8")
    assert "quality gate failed, nothing exported" in log
    assert "expect_column_values_to_not_be_null on marts.customer_360.email" in log
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
    # the failed daily run published nothing, so no audience run followed it
    assert statuses == ["success", "success", "failed at quality_gate"]
