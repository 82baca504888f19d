"""The demo generator: deterministic, consistent, and as noisy as real exports."""

from __future__ import annotations

import csv
import json
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
    rows = []
    for path in sorted((out / "crm").glob("contacts_*.csv")):
        data = path.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            try:
                text = data.decode("cp932")
            except UnicodeDecodeError:  # the delta with an injected bad line
                text = data.decode("utf-8", errors="replace")
        rows += list(csv.DictReader(text.splitlines()))
    return rows


def all_files(folder):
    return {
        p.relative_to(folder): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.suffix != ".sqlite"
    }


def test_same_seed_same_files_other_seed_other_files(demo, tmp_path):
    out, _ = demo
    generate_demo(tmp_path / "again", customers=600, seed=3, as_of=AS_OF)
    generate_demo(tmp_path / "other", customers=600, seed=4, as_of=AS_OF)
    assert all_files(tmp_path / "again") == all_files(out)
    assert all_files(tmp_path / "other") != all_files(out)
    query = "select * from order_items order by 1"
    db = "shop/orders.sqlite"
    assert table(tmp_path / "again" / db, query) == table(out / db, query)


def test_every_source_is_written_with_the_layout_the_config_expects(demo):
    out, counts = demo
    assert set(counts) == {
        "crm_contacts", "shop_customers", "shop_products", "shop_orders", "shop_order_items",
        "shop_subscriptions", "shop_returns", "support_tickets", "web_events", "email_campaigns",
        "email_events", "social_mentions", "social_referrals", "spend_monthly",
    }  # fmt: skip
    assert len(list((out / "crm").glob("contacts_*.csv"))) == 8  # full export + 7 daily deltas
    assert len(list((out / "web" / "events").glob("date=*/events.jsonl"))) == 30
    assert (out / "support" / "tickets.jsonl").exists()
    assert all(v > 0 for v in counts.values())


def test_full_export_is_shift_jis_and_deltas_are_utf8(demo):
    out, _ = demo
    files = sorted((out / "crm").glob("contacts_*.csv"))
    with pytest.raises(UnicodeDecodeError):
        files[0].read_bytes().decode("utf-8")
    header = files[0].read_bytes().decode("cp932").splitlines()[0]
    assert header == ",".join(CSV_COLUMNS)
    files[-1].read_bytes().decode("utf-8")


def test_foreign_keys_and_times(demo):
    out, _ = demo
    db = out / "shop" / "orders.sqlite"
    orphans = [
        "select count(*) from orders where customer_id not in (select customer_id from customers)",
        "select count(*) from order_items where order_id not in (select order_id from orders)",
        "select count(*) from returns where order_id not in (select order_id from orders)",
        "select count(*) from subscriptions where customer_id not in (select customer_id from customers)",
    ]
    for query in orphans:
        assert table(db, query) == [(0,)], query
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
    assert any(p.startswith("+81") for p in phones)
    assert any("０" in p or "９" in p for p in phones)
    assert any(len(r["postal_code"]) == 7 for r in rows)
    # some contacts change later: a second version in a delta
    ids = [r["contact_id"] for r in rows if r["contact_id"].startswith("C")]
    assert len(ids) > len(set(ids))


def test_truth_and_injected_bad_rows_are_recorded(demo):
    out, _ = demo
    with (out / "_truth" / "identity.csv").open(encoding="utf-8") as handle:
        truth = list(csv.DictReader(handle))
    assert {r["source"] for r in truth} == {"crm", "shop", "support", "web", "social"}
    injected = json.loads((out / "_truth" / "injected_bad_rows.json").read_text())
    assert set(injected) == {
        "crm.contacts", "shop.customers", "shop.orders", "shop.order_items", "support.tickets",
        "web.events", "email.events", "social.mentions", "spend.monthly",
    }  # fmt: skip


def test_a_realistic_share_of_buyers_is_dormant(demo):
    out, _ = demo
    last = table(
        out / "shop" / "orders.sqlite",
        "select max(ordered_at) from orders where status = 'completed' group by customer_id",
    )
    dormant = sum((AS_OF - datetime.fromisoformat(t).date()).days > 180 for (t,) in last)
    assert 0.15 < dormant / len(last) < 0.5
