"""The demo generator: deterministic, consistent, and as noisy as real exports."""

from __future__ import annotations

import csv
import sqlite3
from datetime import UTC, date, datetime

import pytest

from crm360.demo.generator import CSV_COLUMNS, generate_demo

AS_OF = date(2026, 11, 1)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    counts = generate_demo(out, customers=600, seed=3, as_of=AS_OF)
    return out, counts


def table(path, sql):
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


def contacts(out):
    with (out / "crm_contacts.csv").open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_same_seed_same_files_other_seed_other_files(demo, tmp_path):
    out, _ = demo
    generate_demo(tmp_path / "again", customers=600, seed=3, as_of=AS_OF)
    generate_demo(tmp_path / "other", customers=600, seed=4, as_of=AS_OF)
    same = (out / "crm_contacts.csv").read_bytes()
    assert (tmp_path / "again" / "crm_contacts.csv").read_bytes() == same
    assert (tmp_path / "other" / "crm_contacts.csv").read_bytes() != same
    query = "select * from order_items order by 1"
    assert table(tmp_path / "again" / "orders.sqlite", query) == table(out / "orders.sqlite", query)


def test_counts_header_and_foreign_keys(demo):
    out, counts = demo
    db = out / "orders.sqlite"
    with (out / "crm_contacts.csv").open(encoding="utf-8") as handle:
        assert handle.readline().rstrip("\n") == ",".join(CSV_COLUMNS)
    assert counts["crm_contacts"] == len(contacts(out))
    for name in ("customers", "products", "orders", "order_items"):
        assert counts[f"shop_{name}"] == table(db, f"select count(*) from {name}")[0][0]
    assert table(
        db,
        "select count(*) from orders where customer_id not in (select customer_id from customers)",
    ) == [(0,)]
    assert table(
        db, "select count(*) from order_items where order_id not in (select order_id from orders)"
    ) == [(0,)]
    assert table(
        db,
        "select count(*) from order_items "
        "where product_id not in (select product_id from products)",
    ) == [(0,)]
    cutoff = datetime(2026, 10, 31, 15, tzinfo=UTC)  # as_of 00:00 JST
    times = [datetime.fromisoformat(t) for (t,) in table(db, "select ordered_at from orders")]
    assert max(times) < cutoff


def test_contact_data_carries_realistic_noise(demo):
    out, _ = demo
    rows = contacts(out)
    emails = [r["email"] for r in rows]
    phones = [r["phone"] for r in rows]
    assert any(e != e.strip() for e in emails)
    assert any(e != e.lower() for e in emails)
    assert any(e == "" for e in emails)
    assert any(p.startswith("+81") for p in phones)
    assert any("０" in p or "９" in p for p in phones)
    assert any(len(r["postal_code"]) == 7 for r in rows)
    assert {r["email_opt_in"] for r in rows} == {"true", "false"}


def test_some_shop_accounts_link_only_by_email(demo):
    out, _ = demo
    crm_emails = {r["email"].strip().lower() for r in contacts(out) if r["email"].strip()}
    by_email = [
        email
        for email, contact_id in table(
            out / "orders.sqlite", "select email, contact_id from customers"
        )
        if contact_id is None and email.strip().lower() in crm_emails
    ]
    assert len(by_email) > 20


def test_a_realistic_share_of_buyers_is_dormant(demo):
    out, _ = demo
    last = table(
        out / "orders.sqlite",
        "select max(ordered_at) from orders where status = 'completed' group by customer_id",
    )
    dormant = sum((AS_OF - datetime.fromisoformat(t).date()).days > 180 for (t,) in last)
    assert 0.15 < dormant / len(last) < 0.5
