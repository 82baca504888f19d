"""Erasure through the real DAGs: a deletion request that arrives on day 2 leaves no byte of the
person's e-mail, phone or name in anything the project wrote (warehouse, both copies, earlier
exports, Data Docs, logs, Airflow's database), and a row sent again stays anonymous.

The people erased are drawn at random on every run (the seed is in each failure message;
CRM360_ERASURE_SEED replays one): a property over deletion sets, not one hand-picked case.
"""

from __future__ import annotations

import csv
import json
import os
import random
import unicodedata
from datetime import UTC, date, datetime, time

import polars as pl
import pytest

from crm360.cli import run_pipeline
from crm360.demo.generator import generate_demo
from crm360.warehouse import connect
from tests.conftest import make_settings
from tests.privacy.scan import find_values
from tests.test_pipeline_e2e import read_contacts

DAY_1, DAY_2 = date(2026, 11, 1), date(2026, 11, 2)
SEED = int(os.environ.get("CRM360_ERASURE_SEED") or random.SystemRandom().randrange(10**6))


def _people_values(con, customers: set[str]) -> dict[str, set[str]]:
    """customer id -> the e-mails, phones and full names its records hold (raw, as written)."""
    rows = con.execute(
        """
        select g.customer_id, unnest([c.email, c.phone, c.last_name || c.first_name,
            c.last_name || ' ' || c.first_name, s.email, s.phone, s.full_name,
            t.customer_email, w.email])
        from identity.identity_graph as g
        left join raw.crm_contacts as c on g.source = 'crm' and c.contact_id = g.source_key
        left join raw.shop_customers as s on g.source = 'shop' and s.customer_id = g.source_key
        left join raw.support_tickets as t on g.source = 'support' and t.ticket_id = g.source_key
        left join raw.web_events as w on g.source = 'web' and w.anonymous_id = g.source_key
        """
    ).fetchall()
    # placeholders (test@example.com) are nobody's: identity blocks them
    placeholders = {v.lower() for (v,) in con.execute(
        "select id_value from identity.blocked_identifiers where id_value is not null").fetchall()}  # fmt: skip
    values: dict[str, set[str]] = {}
    for customer, value in rows:
        if value and len(value.strip()) >= 2 and value.strip().lower() not in placeholders:
            values.setdefault(customer, set()).add(value.strip())
    return values


def _write_contacts(path, rows):
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture(scope="module")
def erasure(tmp_path_factory):
    delay = os.environ.get("CRM360_RETRY_DELAY_SECONDS")
    os.environ["CRM360_RETRY_DELAY_SECONDS"] = "1"  # a retry, should one happen, costs a second
    try:
        yield _erase_on_day_two(tmp_path_factory)
    finally:
        if delay is None:
            os.environ.pop("CRM360_RETRY_DELAY_SECONDS")
        else:
            os.environ["CRM360_RETRY_DELAY_SECONDS"] = delay


def _erase_on_day_two(tmp_path_factory):
    root = tmp_path_factory.mktemp("erasure")
    settings = make_settings(root)
    generate_demo(settings.source_dir, customers=300, seed=11, as_of=DAY_1)
    ok, log = run_pipeline(settings, DAY_1, airflow_home=root / "airflow")
    assert ok, log.read_text(encoding="utf-8")[-3000:]

    contacts = read_contacts(settings.source_dir)
    with connect(settings.warehouse, read_only=True) as con:
        owner = dict(con.execute(
            "select source_key, customer_id from identity.identity_graph where source = 'crm'"
        ).fetchall())  # fmt: skip
        values = _people_values(con, set(owner.values()))
        exported = {r[0] for r in con.execute(
            "select distinct customer_id from activation.audience_members "
            "where not is_control").fetchall()}  # fmt: skip
    rng = random.Random(SEED)
    open_contacts = sorted(
        c for c, row in contacts.items() if row["deletion_requested"] != "true" and c in owner
    )
    members = [c for c in open_contacts if owner[c] in exported]
    chosen = set(rng.sample(members, 6)) | set(rng.sample(open_contacts, 6))
    erased = {owner[c] for c in chosen}
    already = {owner[c] for c, row in contacts.items()
               if row["deletion_requested"] == "true" and c in owner}  # fmt: skip
    # a value someone who did not ask also holds (a common name, written with a full-width
    # or a half-width space: staging writes both the same), or that is part of theirs (岡田 健
    # in 岡田 健太), is theirs too: it stays, and the search cannot tell the two apart
    kept = {
        unicodedata.normalize("NFKC", v)
        for customer, vs in values.items() if customer not in erased | already for v in vs
    }  # fmt: skip
    secret = {
        v for c in erased for v in values.get(c, set())
        if not any(unicodedata.normalize("NFKC", v) in k for k in kept)
    }  # fmt: skip

    requests = []
    for contact in sorted(chosen):
        row = dict(contacts[contact])
        row["deletion_requested"] = "true"
        row["updated_at"] = "2026-11-01T08:00:00+09:00"
        requests.append(row)
    _write_contacts(settings.source_dir / "crm" / "contacts_20261101.csv", requests)
    ok, log = run_pipeline(settings, DAY_2, airflow_home=root / "airflow")
    assert ok, log.read_text(encoding="utf-8")[-3000:]
    return settings, root, erased, secret, chosen, contacts


def test_no_byte_of_an_erased_person_remains_anywhere(erasure):
    settings, root, erased, secret, *_ = erasure
    assert len(erased) >= 10 and len(secret) >= 20, (SEED, erased, secret)
    # the sources are the company's files; dbt's artefacts are the project's compiled code
    # (whose unit-test fixtures use sample names such as 佐藤 花子)
    hits = find_values(root, secret, skip=(settings.source_dir, settings.dbt_target_dir))
    assert hits == {}, f"seed {SEED}: {json.dumps({k: sorted(v) for k, v in hits.items()})}"


def test_the_erasure_is_recorded_and_reported(erasure):
    settings, root, erased, *_ = erasure
    with connect(settings.warehouse, read_only=True) as con:
        recorded = {r[0] for r in con.execute(
            "select customer_id from privacy.erasures where as_of_date = '2026-11-02'"
        ).fetchall()}  # fmt: skip
        keys = con.execute(
            "select count(*), min(length(key_hash)) from privacy.erased_keys"
        ).fetchone()
        compacted = con.execute(
            "select count(*) from privacy.erasures where compacted_at is null").fetchone()[0]  # fmt: skip
        report = con.execute(
            "select report from ops.run_reports where dag_id = 'crm360_daily' "
            "order by created_at desc limit 1"
        ).fetchone()[0]
    assert recorded == erased, SEED
    assert keys[0] >= len(erased) and keys[1] == 64
    assert compacted == 0
    assert json.loads(report)["erasure"]["customers_erased"] == len(erased)
    # the analysts' copy has the record, not the hashes
    with connect(settings.published_warehouse, read_only=True) as con:
        assert con.execute("select count(*) from privacy.erased_keys").fetchone()[0] == 0
        assert con.execute("select count(*) from privacy.erasures").fetchone()[0] >= len(erased)


def test_erased_people_stay_in_the_marts_without_personal_data(erasure):
    settings, _, erased, *_ = erasure
    with connect(settings.warehouse, read_only=True) as con:
        rows = con.execute(
            "select count(*), count(email), count(full_name), count(phone_e164), "
            "bool_and(is_deletion_requested) from marts.customer_360 where customer_id in "
            "(select unnest(?))",
            [sorted(erased)],
        ).fetchone()
    assert rows == (len(erased), 0, 0, 0, True), SEED


def test_removals_reach_the_marketing_tools_as_ids_and_hashes(erasure):
    settings, _, erased, *_ = erasure
    removed = set()
    for audience in settings.export_dir.iterdir():
        latest = json.loads((audience / "latest.json").read_text(encoding="utf-8"))
        folder = audience / latest["path"]
        for path in folder.glob("*.removed.csv"):
            frame = pl.read_csv(path, infer_schema=False)
            if "customer_id" in frame.columns:
                assert frame.columns == ["customer_id"]
                removed |= set(frame["customer_id"])
        members = pl.read_parquet(folder / "members.parquet")
        assert members.columns == [
            "customer_id", "google_email", "google_phone", "meta_email", "meta_phone"
        ]  # fmt: skip
    assert erased & removed, SEED  # six of them were exported on day 1


def test_a_row_sent_again_stays_anonymous(erasure):
    """The CRM sends an erased contact again, as it was before the request: it is loaded
    anonymous and still marked for deletion (the salted hash of its id is on record)."""
    from crm360 import pipeline

    settings, _, _, secret, chosen, contacts = erasure
    contact = sorted(chosen)[0]
    row = dict(contacts[contact])
    row["updated_at"] = "2026-11-02T08:00:00+09:00"
    assert row["deletion_requested"] == "false" and row["email"]
    _write_contacts(settings.source_dir / "crm" / "contacts_20261102.csv", [row])
    as_of = datetime.combine(date(2026, 11, 3), time(), tzinfo=UTC)
    result = pipeline.ingest_source("crm", "resend", as_of, settings)
    assert result["loads"][0]["rows_loaded"] == 1
    with connect(settings.warehouse, read_only=True) as con:
        loaded = con.execute(
            "select email, phone, last_name, deletion_requested from raw.crm_contacts "
            "where contact_id = ? order by _loaded_at desc limit 1",
            [contact],
        ).fetchone()
    assert loaded == (None, None, None, "true")
    hits = find_values(settings.warehouse.parent, {row["email"]}, skip=())
    assert not {k for k in hits if "crm360.duckdb:" in k}, hits
