"""Identity resolution on hand-made staging rows: rules, guards, stable ids, merges, splits."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import date
from pathlib import Path

import pytest

from crm360.identity import load_config, resolve
from crm360.identity.config import IdentityConfigError, parse_config
from crm360.settings import PROJECT_ROOT

DAY1, DAY2 = date(2026, 11, 1), date(2026, 11, 2)

CONTACT = ("contact_id", "last_name", "first_name", "last_name_kana", "first_name_kana",
           "email", "phone_e164", "postal_code", "prefecture", "birth_date", "created_at")  # fmt: skip
SHOP = ("shop_customer_id", "contact_id", "email", "full_name", "full_name_kana", "phone_e164",
        "postal_code", "prefecture", "birth_date", "created_at")  # fmt: skip


def _create(con, contacts=(), shops=(), tickets=(), web=(), mentions=()):
    con.execute("create schema if not exists staging")
    con.execute(
        "create or replace table staging.stg_crm__contacts (contact_id varchar, last_name varchar,"
        " first_name varchar, last_name_kana varchar, first_name_kana varchar, email varchar,"
        " phone_e164 varchar, postal_code varchar, prefecture varchar, birth_date date,"
        " created_at timestamp)"
    )
    con.execute(
        "create or replace table staging.stg_shop__customers (shop_customer_id bigint,"
        " contact_id varchar, email varchar, full_name varchar, full_name_kana varchar,"
        " phone_e164 varchar, postal_code varchar, prefecture varchar, birth_date date,"
        " created_at timestamp)"
    )
    con.execute(
        "create or replace table staging.stg_support__tickets (ticket_id varchar, email varchar,"
        " shop_customer_id bigint, created_at timestamp)"
    )
    con.execute(
        "create or replace table staging.stg_web__events (anonymous_id varchar,"
        " shop_customer_id bigint, occurred_at timestamp)"
    )
    con.execute(
        "create or replace table staging.stg_social__mentions (handle varchar, email varchar,"
        " posted_at timestamp)"
    )
    for table, rows, width in (
        ("stg_crm__contacts", contacts, len(CONTACT)),
        ("stg_shop__customers", shops, len(SHOP)),
        ("stg_support__tickets", tickets, 4),
        ("stg_web__events", web, 3),
        ("stg_social__mentions", mentions, 3),
    ):
        for row in rows:
            marks = ", ".join("?" * width)
            con.execute(f"insert into staging.{table} values ({marks})", list(row))


def contact(cid, last, first, kana_last, kana_first, email, phone, postal="100-0001", birth=None):
    return (cid, last, first, kana_last, kana_first, email, phone, postal, "東京都", birth,
            "2025-01-01")  # fmt: skip


def shop(sid, email, name, kana, phone, contact_id=None, postal="100-0001", birth=None):
    return (sid, contact_id, email, name, kana, phone, postal, "東京都", birth, "2025-02-01")


def customer_of(con) -> dict[str, str]:
    return dict(
        con.execute("select record_id, customer_id from identity.identity_graph").fetchall()
    )


def test_deterministic_rules_link_every_source(con, config):
    _create(
        con,
        contacts=[
            contact("C1", "佐藤", "花子", "サトウ", "ハナコ", "hanako@example.jp", "+819011112222")
        ],
        shops=[
            shop(1, "other@example.jp", "佐藤 花子", "サトウ ハナコ", None, contact_id="C1"),
            shop(2, "hanako@example.jp", "佐藤 花子", "サトウ ハナコ", None, postal="999-9999"),
            shop(3, "x@example.jp", "別人", "ベツジン", "+819011112222", postal="999-9998"),
        ],
        tickets=[("T1", "hanako@example.jp", None, "2025-03-01"), ("T2", None, 3, "2025-03-01")],
        web=[
            ("dev-1", 1, "2025-03-01"),
            ("dev-1", None, "2025-03-02"),
            ("dev-2", None, "2025-03-03"),
        ],
        mentions=[("@hanako", "hanako@example.jp", "2025-03-01"), ("@anon", None, "2025-03-01")],
    )
    summary = resolve(con, DAY1, "run-1", config)
    ids = customer_of(con)
    rules = dict(con.execute("select record_id, link_rule from identity.identity_graph").fetchall())
    one = ids["crm:C1"]
    linked = ["shop:1", "shop:2", "support:T1", "web:dev-1", "social:@hanako"]
    assert all(ids[r] == one for r in linked)
    assert rules["shop:1"] == "crm_id" and rules["shop:2"] == "email"
    assert rules["web:dev-1"] == "web_login"
    # shop 3 shares the phone but not the name: a phone needs the names to agree
    assert ids["shop:3"] != one and ids["support:T2"] == ids["shop:3"]
    unlinkable = dict(con.execute(
        "select record_id, reason from identity.unlinkable_records").fetchall())  # fmt: skip
    assert unlinkable == {
        "web:dev-2": "anonymous web device that never logged in",
        "social:@anon": "social handle with no e-mail",
    }
    assert summary["records"] == summary["linked_records"] + summary["unlinkable_records"]
    assert one == "cus_" + hashlib.md5(b"crm:C1").hexdigest()[:16]


def test_kanji_variant_and_kana_typo_are_matched_by_splink(con, config):
    # enough people to train the model on: 1,200 contacts, 600 with their own shop account
    surnames = [
        ("斎藤", "サイトウ"),
        ("渡辺", "ワタナベ"),
        ("高橋", "タカハシ"),
        ("山田", "ヤマダ"),
        ("佐藤", "サトウ"),
        ("鈴木", "スズキ"),
        ("田中", "タナカ"),
        ("伊藤", "イトウ"),
    ]
    givens = [("花子", "ハナコ"), ("太郎", "タロウ"), ("美咲", "ミサキ"), ("健", "ケン"),
              ("陽菜", "ヒナ"), ("蓮", "レン"), ("結衣", "ユイ"), ("大翔", "ヒロト")]  # fmt: skip
    people, shops = [], []
    for i in range(1200):
        (last, kl), (first, kf) = surnames[i % 8], givens[(i // 8) % 8]
        postal, birth = f"{100 + i % 800:03d}-{i:04d}", date(1950 + i % 50, 1 + i % 12, 1 + i % 28)
        people.append(
            contact(
                f"C{i}",
                last,
                first,
                kl,
                kf,
                f"p{i}@example.jp",
                f"+8190{i:08d}",
                postal=postal,
                birth=birth,
            )
        )
        if i % 2 == 0 and i > 0:  # every 4th: a second identity, another e-mail and phone
            second = i % 4 == 0
            email = f"w{i}@corp.example.jp" if second else f"p{i}@example.jp"
            phone = f"+8180{i:08d}" if second else f"+8190{i:08d}"
            name = (f"{last} {first}", f"{kl} {kf}")
            shops.append(shop(i, email, *name, phone, postal=postal, birth=birth))
    # the shop account of C0: another e-mail and phone, kanji variant, a long vowel typed as a bar
    shops.append(shop(1, "work@corp.example.jp", "斉藤 花子", "サイトー ハナコ", "+818099998888",
                      postal="100-0000", birth=date(1950, 1, 1)))  # fmt: skip
    _create(con, contacts=people, shops=shops)
    summary = resolve(con, DAY1, "run-1", config)
    assert summary["probabilistic_matching"] == "ran"
    # where the run's time went, phase by phase, within the run's own seconds
    phases = summary["phase_seconds"]
    assert list(phases) == [
        "records", "deterministic", "probabilistic", "clustering", "ids", "write"
    ]  # fmt: skip
    assert all(seconds >= 0 for seconds in phases.values()) and phases["probabilistic"] > 0
    assert sum(phases.values()) <= summary["seconds"] + 0.5
    ids = customer_of(con)
    assert ids["shop:1"] == ids["crm:C0"]
    row = con.execute(
        "select link_rule, match_probability from identity.identity_graph where record_id = 'shop:1'"
    ).fetchone()
    assert row[0] == "probabilistic" and row[1] >= config.probabilistic.threshold
    # every second identity found, nobody else merged: 1,200 contacts stay 1,200 customers
    assert all(ids[f"shop:{i}"] == ids[f"crm:C{i}"] for i in range(4, 1200, 4))
    assert summary["customers"] == 1200


def test_blocked_values_and_shared_numbers_link_no_one(con, config):
    _create(
        con,
        contacts=[
            contact("C1", "池田", "悠真", "イケダ", "ユウマ", "yuma@example.jp", "+81320298498"),
            contact("C2", "池田", "修", "イケダ", "オサム", "osamu@example.jp", "+81320298498"),
        ],
        shops=[
            shop(
                1,
                "test@example.com",
                "田中 一",
                "タナカ ハジメ",
                "+810000000000",
                postal="200-0001",
            ),
            shop(2, "test@example.com", "鈴木 二", "スズキ ジ", "+810000000000", postal="300-0001"),
            shop(3, "null", "伊藤 三", "イトウ サン", None, postal="400-0001"),
            shop(4, "null", "加藤 四", "カトウ シ", None, postal="500-0001"),
        ],
    )
    resolve(con, DAY1, "run-1", config)
    ids = customer_of(con)
    assert len({ids["crm:C1"], ids["crm:C2"]}) == 2  # a household landline
    assert len({ids[f"shop:{i}"] for i in range(1, 5)}) == 4  # placeholders
    reasons = dict(con.execute(
        "select id_value, any_value(reason) from identity.blocked_identifiers group by 1").fetchall())  # fmt: skip
    assert reasons["+81320298498"] == "shared by 2 CRM contacts (limit 1)"
    assert reasons["test@example.com"] == "blocked value 'test@example.com'"
    assert reasons["+810000000000"].startswith("blocked pattern")
    assert reasons["null"].startswith("blocked")
    # each value is checked once and the answer kept, until the rules change
    checked = con.execute("select count(*) from identity.identifier_checks").fetchone()[0]
    resolve(con, DAY1, "run-2", config)
    assert con.execute("select count(*) from identity.identifier_checks").fetchone()[0] == checked
    stricter = dataclasses.replace(config, blocked_values={
        **config.blocked_values,
        "email": config.blocked_values["email"] | {"yuma@example.jp"},
    })  # fmt: skip
    resolve(con, DAY1, "run-3", stricter)
    blocked = {
        v for (v,) in con.execute("select id_value from identity.blocked_identifiers").fetchall()
    }
    assert "yuma@example.jp" in blocked and "osamu@example.jp" not in blocked
    resolve(con, DAY1, "run-4", config)
    blocked = {
        v for (v,) in con.execute("select id_value from identity.blocked_identifiers").fetchall()
    }
    assert "yuma@example.jp" not in blocked and "test@example.com" in blocked


def test_cluster_limit_drops_the_weaker_link(con, config):
    # shop 1 carries C1's id, and C2's e-mail: the e-mail link would put two CRM contacts in
    # one customer, so it is refused, and recorded
    _create(
        con,
        contacts=[
            contact("C1", "佐藤", "一郎", "サトウ", "イチロウ", "ichiro@example.jp", None),
            contact(
                "C2", "鈴木", "二郎", "スズキ", "ジロウ", "jiro@example.jp", None, postal="200-0002"
            ),
        ],
        shops=[shop(1, "jiro@example.jp", "佐藤 一郎", "サトウ イチロウ", None, contact_id="C1")],
    )
    resolve(con, DAY1, "run-1", config)
    ids = customer_of(con)
    assert ids["shop:1"] == ids["crm:C1"] != ids["crm:C2"]
    rejected = con.execute("select link_rule, reason from identity.rejected_links").fetchall()
    assert ("email", "would give one customer 2 crm_id values (limit 1): C1, C2") in rejected


def test_ids_are_stable_across_reruns_and_an_added_day(con, config):
    contacts = [contact(f"C{i}", "山田", f"名{i}", "ヤマダ", f"ナ{i}", f"p{i}@example.jp", None,
                        postal=f"{100 + i}-0000") for i in range(20)]  # fmt: skip
    _create(con, contacts=contacts)
    resolve(con, DAY1, "run-1", config)
    first = customer_of(con)
    resolve(con, DAY1, "run-1-again", config)
    assert customer_of(con) == first
    # a new day: new customers, and new records of existing ones
    con.execute("insert into staging.stg_crm__contacts values "
                "('C99', '新', '人', 'シン', 'ジン', 'new@example.jp', null, '999-0000', "
                "'東京都', null, '2026-11-01')")  # fmt: skip
    con.execute("insert into staging.stg_shop__customers values (7, null, 'p3@example.jp', "
                "'山田 名3', null, null, null, null, null, '2026-11-01')")  # fmt: skip
    resolve(con, DAY2, "run-2", config)
    second = customer_of(con)
    assert {r: second[r] for r in first} == first
    assert second["shop:7"] == first["crm:C3"]
    assert con.execute("select count(*) from identity.id_changes").fetchone()[0] == 0


def test_late_record_merges_two_customers_and_a_changed_email_splits_one(con, config):
    _create(
        con,
        contacts=[contact("C1", "佐藤", "一郎", "サトウ", "イチロウ", "ichiro@example.jp", None)],
        shops=[
            shop(1, "guest1@example.net", "佐藤 一郎", "サトウ イチロウ", None, postal="900-0001"),
            shop(2, "ichiro@example.jp", "佐藤 一郎", "サトウ イチロウ", None, postal="900-0002"),
        ],
    )
    resolve(con, DAY1, "run-1", config)
    before = customer_of(con)
    assert before["shop:1"] != before["crm:C1"] == before["shop:2"]
    # day 2: a late helpdesk ticket ties shop 1 to C1's e-mail; C1 changes e-mail, so shop 2
    # (linked only by the old e-mail) falls away
    con.execute("insert into staging.stg_support__tickets values "
                "('T9', 'ichiro.new@example.jp', 1, '2026-11-01')")  # fmt: skip
    con.execute("update staging.stg_crm__contacts set email = 'ichiro.new@example.jp'")
    resolve(con, DAY2, "run-2", config)
    after = customer_of(con)
    assert after["crm:C1"] == before["crm:C1"] == after["shop:1"] == after["support:T9"]
    assert after["shop:2"] != after["crm:C1"]
    changes = con.execute(
        "select old_customer_id, new_customer_id, change_type, as_of_date, run_id "
        "from identity.id_changes order by change_type"
    ).fetchall()
    assert changes == [
        (before["shop:1"], after["crm:C1"], "merge", DAY2, "run-2"),
        (before["crm:C1"], after["shop:2"], "split", DAY2, "run-2"),
    ]
    status = dict(con.execute("select customer_id, status from identity.customers").fetchall())
    assert status[before["shop:1"]] == "merged" and status[after["shop:2"]] == "active"
    merged_into = con.execute(
        "select merged_into from identity.customers where customer_id = ?", [before["shop:1"]]
    ).fetchone()[0]
    assert merged_into == after["crm:C1"]


def test_bad_configuration_is_refused_with_the_reason(tmp_path):
    with pytest.raises(IdentityConfigError, match="unknown identifier type"):
        parse_config({"max_per_cluster": {"fax": 1}})
    with pytest.raises(IdentityConfigError, match="probabilistic.threshold: Input should be less"):
        parse_config({"probabilistic": {"threshold": 1.5, "comparisons": [], "blocking_rules": []}})
    path = tmp_path / "identity.yml"
    path.write_text("probabilistic:\n  comparisons: [{column: shoe_size, kind: exact}]\n")
    with pytest.raises(
        IdentityConfigError, match=f"(?s){path}: .*line 2: .*unknown column 'shoe_size'"
    ):
        load_config(path)
    path.write_text("max_per_cluster:\n  crm_id: 1\nmax_per_clustr: {email: 2}\n")
    with pytest.raises(IdentityConfigError, match="line 3: max_per_clustr: unknown key; did you"):
        load_config(path)
    assert (
        load_config(Path(PROJECT_ROOT / "config" / "identity.yml")).max_per_cluster["crm_id"] == 1
    )
