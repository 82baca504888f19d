"""Between trainings, a run reuses the last probabilistic model and scores only the pairs that
hold a new or changed record; the pairs it ends with are those a full scoring would give."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date

import pyarrow as pa
import pytest

from crm360.identity import resolve
from crm360.identity.matching import PreviousMatch, match_records
from tests.identity.test_resolution import _create, contact, shop

DAY1, DAY2 = date(2026, 11, 1), date(2026, 11, 2)
SURNAMES = [("斎藤", "サイトウ"), ("渡辺", "ワタナベ"), ("高橋", "タカハシ"), ("山田", "ヤマダ"),
            ("佐藤", "サトウ"), ("鈴木", "スズキ"), ("田中", "タナカ"), ("伊藤", "イトウ")]  # fmt: skip
GIVENS = [("花子", "ハナコ"), ("太郎", "タロウ"), ("美咲", "ミサキ"), ("健", "ケン"),
          ("陽菜", "ヒナ"), ("蓮", "レン"), ("結衣", "ユイ"), ("大翔", "ヒロト")]  # fmt: skip


def people(count: int, second_identity_from: int = 0):
    """`count` contacts; every 2nd also has a shop account: with the same e-mail and phone, or,
    for every 4th from `second_identity_from`, another e-mail and phone (only name, kana,
    postal code and birth date tie them)."""
    contacts, shops = [], []
    for i in range(count):
        (last, kl), (first, kf) = SURNAMES[i % 8], GIVENS[(i // 8) % 8]
        postal, birth = f"{100 + i % 800:03d}-{i:04d}", date(1950 + i % 50, 1 + i % 12, 1 + i % 28)
        contacts.append(contact(f"C{i}", last, first, kl, kf, f"p{i}@example.jp",
                                f"+8190{i:08d}", postal=postal, birth=birth))  # fmt: skip
        if i % 2 or i == 0 or (i % 4 == 0 and i < second_identity_from):
            continue
        second = i % 4 == 0
        email = f"w{i}@corp.example.jp" if second else f"p{i}@example.jp"
        phone = f"+8180{i:08d}" if second else f"+8190{i:08d}"
        shops.append(shop(i, email, f"{last} {first}", f"{kl} {kf}", phone, postal=postal,
                          birth=birth))  # fmt: skip
    return contacts, shops


def pairs_of(con) -> dict[tuple[str, str], float]:
    return {
        (left, right): p
        for left, right, p in con.execute(
            "select record_id_l, record_id_r, match_probability from identity.match_pairs"
        ).fetchall()
    }


def test_a_day_later_the_model_is_reused_and_new_records_are_matched(con, config):
    contacts, shops = people(1200, second_identity_from=600)
    _create(con, contacts=contacts, shops=shops)
    day1 = resolve(con, DAY1, "run-1", config)
    assert day1["probabilistic_model"] == "trained"

    # day 2: the second identities of the first 600 people arrive, one contact moves and one
    # shop account is gone
    contacts, shops = people(1200)
    moved = list(contacts[7])
    moved[7] = "999-0007"
    contacts[7] = tuple(moved)
    shops = [s for s in shops if s[0] != 1196]
    _create(con, contacts=contacts, shops=shops)
    day2 = resolve(con, DAY2, "run-2", config)

    assert day2["probabilistic_model"] == f"reused (trained as of {DAY1})"
    assert day2["pairs_compared"] < day1["pairs_compared"] / 2
    ids = dict(con.execute("select record_id, customer_id from identity.identity_graph").fetchall())
    assert all(ids[f"shop:{i}"] == ids[f"crm:C{i}"] for i in range(4, 600, 4))
    assert "shop:1196" not in ids and day2["customers"] == 1200
    runs = con.execute(
        "select run_id, model_trained_as_of from identity.resolution_runs order by run_id"
    ).fetchall()
    assert runs == [("run-1", DAY1), ("run-2", DAY1)]
    assert con.execute("select count(*) from identity.match_models").fetchall()[0][0] == 1

    # the pairs are exactly those of scoring every pair again with the same model
    model = con.execute("select model from identity.match_models").fetchall()[0][0]
    inputs = con.sql("select * from identity.match_inputs").to_arrow_table()
    empty = PreviousMatch(
        model=json.loads(model), trained_as_of=DAY1, trained_records=0,
        inputs=inputs.slice(0, 0),
        pairs=pa.table({"record_id_l": pa.array([], pa.string()),
                        "record_id_r": pa.array([], pa.string()),
                        "match_probability": pa.array([], pa.float64()),
                        "match_weight": pa.array([], pa.float64())}),
    )  # fmt: skip
    full = match_records(inputs, config.probabilistic, empty)
    expected = {(p["record_id_l"], p["record_id_r"]): p["match_probability"]
                for p in full.pairs.to_pylist()}  # fmt: skip
    got = pairs_of(con)
    assert got.keys() == expected.keys()
    assert all(abs(got[k] - expected[k]) < 1e-12 for k in got)
    assert full.compared > day2["pairs_compared"]
    # day 2 kept day 1's pairs and found those the new records hold
    new = {f"shop:{i}" for i in range(4, 600, 4)}
    assert sum(bool(new & set(k)) for k in got) >= len(new)
    assert sum(not new & set(k) for k in got) > 0


@pytest.mark.parametrize(
    "change, why",
    [
        (lambda p: replace(p, retrain_after_days=0), "retrain_after_days 0 trains every run"),
        (lambda p: replace(p, threshold=0.95), "another threshold"),
        (lambda p: replace(p, seed=7), "other training settings"),
        (lambda p: p, "a week later"),
        (lambda p: replace(p, retrain_after_growth=0.05), "more records than the growth allows"),
    ],
)
def test_the_model_is_retrained_when_it_may_no_longer_fit(con, config, change, why):
    contacts, shops = people(1200, second_identity_from=600)
    _create(con, contacts=contacts, shops=shops)
    resolve(con, DAY1, "run-1", config)
    if why == "more records than the growth allows":
        contacts, shops = people(1200)  # 150 more shop accounts on 1,650 records: +9.1%
        _create(con, contacts=contacts, shops=shops)
    day = date(2026, 11, 8) if why == "a week later" else DAY2
    changed = replace(config, probabilistic=change(config.probabilistic))
    summary = resolve(con, day, "run-2", changed)
    assert summary["probabilistic_model"] == "trained", why
    assert con.execute("select count(*) from identity.match_models").fetchall()[0][0] == 2
