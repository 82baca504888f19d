"""Two days through the real steps: ids stay stable across an added day, a late CRM record
re-stitches, and the SCD2 snapshot records the changed attribute, dated by the as-of date."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from datetime import UTC, date, datetime, time, timedelta

import pytest
from conftest import make_settings

from crm360 import pipeline
from crm360.demo.generator import CSV_COLUMNS, generate_demo
from crm360.warehouse import connect
from ingestion import SOURCES

pytestmark = pytest.mark.slow

DAY1 = date(2026, 11, 1)
DAY2 = DAY1 + timedelta(days=1)


def run_day(settings, day, run_id):
    as_of = datetime.combine(day, time(), tzinfo=UTC)
    for source in SOURCES:
        pipeline.ingest_source(source, run_id, as_of, settings)
    pipeline.build_staging(day, settings)
    identity = pipeline.resolve_identities(day, run_id, settings)
    pipeline.build_marts(day, settings)
    return identity


def test_an_added_day_keeps_ids_and_the_snapshot_records_the_change(tmp_path):
    settings = make_settings(tmp_path)
    generate_demo(settings.source_dir, customers=150, seed=11, as_of=DAY1)
    run_day(settings, DAY1, "day-1")
    with connect(settings.warehouse, read_only=True) as con:
        before = dict(
            con.execute("select record_id, customer_id from identity.identity_graph").fetchall()
        )
        contact_id, customer_id = con.execute(
            "select contact_id, customer_id from marts.customer_360 "
            "where contact_id is not null and postal_code is not null order by 1 limit 1"
        ).fetchone()
    # day 2: the CRM delta (dated DAY1, so it loads in the run as of DAY2) moves the customer
    rows = []
    for path in sorted(settings.source_dir.glob("crm/contacts_*.csv")):
        data = path.read_bytes()
        text = data.decode("utf-8", errors="replace") if path != min(settings.source_dir.glob("crm/*.csv")) else (
            data.decode("cp932", errors="replace"))  # fmt: skip
        rows += [r for r in csv.DictReader(io.StringIO(text)) if r["contact_id"] == contact_id]
    row = rows[-1]
    row.update(postal_code="999-9999", updated_at="2026-11-01T12:00:00+09:00")
    # ... and re-sends an older version of another contact: loaded later, it must not win
    with connect(settings.warehouse, read_only=True) as con:
        other_id, other_postal = con.execute(
            "select contact_id, postal_code from staging.stg_crm__contacts "
            "where contact_id <> ? and postal_code is not null order by 1 limit 1",
            [contact_id],
        ).fetchone()
    older = dict(row, contact_id=other_id, postal_code="888-8888",
                 updated_at="2001-01-01T00:00:00+09:00")  # fmt: skip
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS)
    writer.writeheader()
    writer.writerows([row, older])
    (settings.source_dir / "crm" / "contacts_20261101.csv").write_text(
        out.getvalue(), encoding="utf-8"
    )
    # ... and a later web file brings a new event and a newer version of a loaded one
    first_file = min(settings.source_dir.glob("web/events/date=*/events.jsonl"))
    event = next(e for e in map(json.loads, first_file.read_text(encoding="utf-8").splitlines())
                 if e["event_type"] == "page_view" and not e["event_id"].startswith("E-BAD"))  # fmt: skip
    event.update(event_type="add_to_cart")
    late = dict(event, event_id="E-LATE-1")
    day2_web = settings.source_dir / "web" / "events" / "date=2026-11-01" / "events.jsonl"
    day2_web.parent.mkdir(parents=True)
    day2_web.write_text(
        "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in (event, late)), encoding="utf-8"
    )
    # ... and a later e-mail file a newer version of a loaded event and a new one
    first_email = min(settings.source_dir.glob("email/events_*.csv"))
    sent = next(csv.DictReader(io.StringIO(first_email.read_text(encoding="utf-8"))))
    bounced = dict(sent, event_type="bounce", bounce_type="hard")
    late_email = dict(sent, event_id="EV-LATE-1", event_type="open")
    out = io.StringIO()
    writer = csv.DictWriter(out, list(sent))
    writer.writeheader()
    writer.writerows([bounced, late_email])
    (settings.source_dir / "email" / "events_20261101.csv").write_text(
        out.getvalue(), encoding="utf-8"
    )
    # ... and the shop cancels a completed order
    with sqlite3.connect(settings.source_dir / "shop" / "orders.sqlite") as shop:
        cancelled = shop.execute(
            "select min(order_id) from orders where status = 'completed'"
        ).fetchone()[0]
        shop.execute(
            "update orders set status = 'cancelled', updated_at = '2026-11-01T12:00:00+00:00' "
            "where order_id = ?",
            [cancelled],
        )
    identity = run_day(settings, DAY2, "day-2")

    with connect(settings.warehouse, read_only=True) as con:

        def rows(sql: str) -> set[tuple]:
            return set(con.execute(sql).fetchall())

        after = dict(
            con.execute("select record_id, customer_id from identity.identity_graph").fetchall()
        )
        history = con.execute(
            "select postal_code, cast(dbt_valid_from as date), cast(dbt_valid_to as date) "
            "from snapshots.customer_360_history where customer_id = ? order by dbt_valid_from",
            [customer_id],
        ).fetchall()
        on_day1 = con.execute(
            "select postal_code from snapshots.customer_360_history where customer_id = ? "
            "and dbt_valid_from <= ? and (dbt_valid_to > ? or dbt_valid_to is null)",
            [customer_id, DAY1, DAY1],
        ).fetchone()[0]
        # the web events table, updated incrementally, holds what a full rebuild would
        latest = """
            select event_id, event_type, anonymous_id
            from raw.web_events qualify row_number() over (
                partition by event_id order by _loaded_at desc, _source_row desc) = 1
        """
        staged = rows("select event_id, event_type, anonymous_id from staging.stg_web__events")
        raw = con.execute(latest).fetchall()
        types = dict(con.execute(
            "select event_id, event_type from staging.stg_web__events").fetchall())  # fmt: skip
        # day 2 predicts with the LTV fits and the churn model of day 1 (refit after 7 days)
        fits = con.execute(
            "select as_of_date, fitted_as_of_date, model_name, param_r, param_p, customer_count "
            "from marts.ltv_model_fits order by as_of_date, model_name"
        ).fetchall()
        evaluations = con.execute(
            "select as_of_date, trained_as_of_date, is_model_trained, model_coefficients "
            "from marts.churn_model_evaluation order by as_of_date"
        ).fetchall()
        ltv_days = con.execute("select distinct as_of_date from marts.customer_ltv").fetchall()
        # so do the e-mail events and the shop accounts
        staged_email = rows(
            "select event_id, event_type, bounce_type, _loaded_at from staging.stg_email__events"
        )
        raw_email = rows(
            latest.replace(
                "event_type, anonymous_id", "event_type, nullif(trim(bounce_type), ''), _loaded_at"
            ).replace("web_events", "email_events")
        )
        staged_shop = rows(
            "select shop_customer_id, email, _loaded_at from staging.stg_shop__customers"
        )
        staged_orders = rows(
            "select order_id, order_status, _loaded_at from staging.stg_shop__orders"
        )
        raw_orders = rows(
            "select cast(order_id as bigint), status, _loaded_at from raw.shop_orders "
            "qualify row_number() over (partition by order_id "
            "order by _loaded_at desc, _source_row desc) = 1"
        )
        # and the contacts: the newest version by the CRM's updated_at, whatever the load
        staged_contacts = rows(
            "select contact_id, updated_at, load_id from staging.stg_crm__contacts"
        )
        raw_contacts = rows(
            "select contact_id, cast(cast(updated_at as timestamptz) at time zone 'UTC' "
            "as timestamp), _load_id from raw.crm_contacts qualify row_number() over ("
            "partition by contact_id order by cast(updated_at as timestamptz) desc, "
            "_loaded_at desc, _source_row desc) = 1"
        )
        postal = dict(con.execute(
            "select contact_id, postal_code from staging.stg_crm__contacts where contact_id in (?, ?)",
            [contact_id, other_id],
        ).fetchall())  # fmt: skip
        raw_shop = rows(
            "select cast(customer_id as bigint), lower(trim(email)), _loaded_at "
            "from raw.shop_customers qualify row_number() over (partition by customer_id "
            "order by _loaded_at desc, _source_row desc) = 1"
        )
    assert len(staged) == len(raw) == len(types)
    assert types[event["event_id"]] == "add_to_cart" and types["E-LATE-1"] == "add_to_cart"
    assert staged == set(raw)
    assert staged_email == raw_email and len(staged_email) > 2
    email_types = {event_id: event_type for event_id, event_type, *_ in staged_email}
    assert email_types[sent["event_id"]] == "bounce" and email_types["EV-LATE-1"] == "open"
    assert staged_shop == raw_shop and len(staged_shop) > 100
    assert staged_contacts == raw_contacts and len(staged_contacts) > 100
    assert postal == {contact_id: "999-9999", other_id: other_postal}
    assert staged_orders == raw_orders
    assert {o[:2] for o in staged_orders if o[0] == cancelled} == {(cancelled, "cancelled")}
    assert {r: after[r] for r in before} == before  # nobody renumbered
    assert identity["merges"] == identity["splits"] == 0
    assert history[0][1:] == (DAY1, DAY2) and history[0][0] != "999-9999"
    assert history[1] == ("999-9999", DAY2, None)
    assert on_day1 == history[0][0]
    assert [f[:3] for f in fits] == [
        (DAY1, DAY1, "bg_nbd"), (DAY1, DAY1, "gamma_gamma"),
        (DAY2, DAY1, "bg_nbd"), (DAY2, DAY1, "gamma_gamma"),
    ]  # fmt: skip
    assert [f[3:] for f in fits[:2]] == [f[3:] for f in fits[2:]]
    assert ltv_days == [(DAY2,)]
    day1_model, day2_model = evaluations
    trained_day1 = day1_model[2]
    assert day2_model[:2] == (DAY2, DAY1 if trained_day1 else DAY2)
    if trained_day1:
        assert day2_model[3] == day1_model[3]
