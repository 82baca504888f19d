"""Identity resolution never fails a run for lack of identifiers: on person records with no
e-mail or phone at all (names in kanji and kana, birth dates, postal codes), the probabilistic
training leaves out what the records cannot train and says why, and when nothing can be trained
the stage is skipped with the reason and the deterministic links still apply."""

from __future__ import annotations

import dataclasses
import json
from datetime import date, timedelta

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from crm360.identity import load_config, resolve
from crm360.identity.training import filled_columns, plan_training
from crm360.settings import PROJECT_ROOT
from tests.identity.test_resolution import _create, contact, shop

DAY1, DAY2 = date(2026, 11, 1), date(2026, 11, 2)
SURNAMES = [("佐藤", "サトウ"), ("鈴木", "スズキ"), ("高橋", "タカハシ"), ("田中", "タナカ"),
            ("伊藤", "イトウ"), ("渡辺", "ワタナベ"), ("山本", "ヤマモト"), ("中村", "ナカムラ"),
            ("小林", "コバヤシ"), ("加藤", "カトウ"), ("吉田", "ヨシダ"), ("山田", "ヤマダ"),
            ("斎藤", "サイトウ"), ("池田", "イケダ"), ("橋本", "ハシモト"), ("石川", "イシカワ")]  # fmt: skip
GIVENS = [("花子", "ハナコ"), ("太郎", "タロウ"), ("美咲", "ミサキ"), ("健", "ケン"),
          ("陽菜", "ヒナ"), ("蓮", "レン"), ("結衣", "ユイ"), ("大翔", "ヒロト"),
          ("翔太", "ショウタ"), ("さくら", "サクラ"), ("悠真", "ユウマ"), ("陽斗", "ハルト")]  # fmt: skip
KANJI_VARIANTS = {"斎藤": "斉藤", "渡辺": "渡邊", "高橋": "髙橋"}


def _typed_again(rng, last, first, kana_last, kana_first):
    """The same person typed into the shop: as in the CRM, with a kanji variant, or with the
    kana's long vowel typed as a bar (サイトウ -> サイトー)."""
    style = rng.integers(3)
    if style == 1 and last in KANJI_VARIANTS:
        last = KANJI_VARIANTS[last]
    elif style == 2 and kana_last.endswith("ウ"):
        kana_last = kana_last[:-1] + "ー"
    return f"{last} {first}", f"{kana_last} {kana_first}"


def person_records(people=1000, duplicates=300, seed=7, email=False, per_postal_code=4,
                   birth=True):  # fmt: skip
    """CRM contacts of `people` people (no phone; an e-mail only when `email`), about
    `per_postal_code` people per postal code (None: no postal code), and a shop account for
    `duplicates` of them without the CRM id: typed again (`_typed_again`), one in six after a
    move to another postal code. Returns the contacts, the shop accounts and the shop record
    id -> contact record id of each true duplicate."""
    rng = np.random.default_rng(seed)
    codes = [f"{c // 10000:03d}-{c % 10000:04d}"
             for c in rng.choice(10**7, people // (per_postal_code or 1), replace=False)]  # fmt: skip

    def postal(i):
        if per_postal_code is None:
            return None
        return codes[i if per_postal_code == 1 else rng.integers(len(codes))]

    contacts, shops, truth = [], [], {}
    for i in range(people):
        (last, kana_last), (first, kana_first) = (
            SURNAMES[rng.integers(len(SURNAMES))], GIVENS[rng.integers(len(GIVENS))])  # fmt: skip
        code = postal(i)
        born = date(1950, 1, 1) + timedelta(days=int(rng.integers(18000))) if birth else None
        mail = f"p{i}@example.jp" if email else None
        contacts.append(contact(f"C{i}", last, first, kana_last, kana_first, mail, None,
                                postal=code, birth=born))  # fmt: skip
        if i < duplicates:
            name, kana = _typed_again(rng, last, first, kana_last, kana_first)
            moved = postal(people - 1 - i) if i % 6 == 5 else code
            shops.append(shop(i, mail, name, kana, None, postal=moved, birth=born))
            truth[f"shop:{i}"] = f"crm:C{i}"
    return contacts, shops, truth


def customer_of(con) -> dict[str, str]:
    return dict(
        con.execute("select record_id, customer_id from identity.identity_graph").fetchall()
    )


def run_row(con, run_id: str) -> tuple:
    return con.execute(
        "select probabilistic_matching, probabilistic_skipped_reason, probabilistic_notes "
        "from identity.resolution_runs where run_id = ?",
        [run_id],
    ).fetchall()[0]


def postal_of(con, record_id: str) -> str | None:
    return con.execute(
        "select postal_code from identity.match_inputs where record_id = ?", [record_id]
    ).fetchall()[0][0]


def shares_a_block(con, shop_id: str, contact_id: str) -> bool:
    """Whether the two records fall in one of the configured prediction blocks."""
    return con.execute(
        """
        select (l.postal_code = r.postal_code)
            or (l.name_kana = r.name_kana and l.birth_date = r.birth_date)
            or (l.name = r.name and l.prefecture = r.prefecture)
        from identity.match_inputs as l, identity.match_inputs as r
        where l.record_id = ? and r.record_id = ?
        """,
        [shop_id, contact_id],
    ).fetchall()[0][0]


def test_records_without_email_or_phone_are_matched_on_what_they_hold(con, config):
    contacts, shops, truth = person_records()
    _create(con, contacts=contacts, shops=shops)
    summary = resolve(con, DAY1, "run-1", config)

    assert summary["probabilistic_matching"] == "ran"
    assert summary["probabilistic_skipped_reason"] is None
    notes = summary["probabilistic_notes"]
    assert "comparison email: left out, no record holds a value" in notes
    assert "comparison phone: left out, no record holds a value" in notes
    assert "prior rule [email]: left out, no record holds a value for email" in notes
    assert "prior rule [phone]: left out, no record holds a value for phone" in notes
    assert any(n.startswith("prior: no prior rule finds a pair; 0.1 matching pairs per record")
               for n in notes)  # fmt: skip
    assert not any(n.startswith("EM block") for n in notes)
    assert run_row(con, "run-1") == ("ran", None, notes)
    model = json.loads(con.execute("select model from identity.match_models").fetchall()[0][0])
    compared = {c["output_column_name"] for c in model["comparisons"]}
    assert compared == {"name", "name_kana", "birth_date", "postal_code"}
    expected_prior = 0.1 * 1300 / (1300 * 1299 / 2)
    assert model["probability_two_random_records_match"] == pytest.approx(expected_prior)

    # the true duplicates are found: all of those at the same postal code, and nearly all of
    # those that moved but share another block (a move and a kana typo together may not be)
    ids = customer_of(con)
    linked = {s for s, c in truth.items() if ids[s] == ids[c]}
    same_postal = {s for s, c in truth.items() if postal_of(con, s) == postal_of(con, c)}
    in_a_block = {s for s, c in truth.items() if shares_a_block(con, s, c)}
    assert len(same_postal) >= 250 and same_postal <= linked
    assert len(in_a_block - same_postal) >= 40
    assert len(linked & in_a_block) >= 0.99 * len(in_a_block)
    # and nobody else: every customer is one person, no link was refused
    people = {}
    for record, customer in ids.items():
        people.setdefault(customer, set()).add(record.split(":")[1].lstrip("C"))
    assert all(len(p) == 1 for p in people.values())
    assert summary["rejected_links"] == 0


@pytest.mark.parametrize(
    "records, notes",
    [
        (
            lambda: person_records(email=True, per_postal_code=None, birth=False),
            [
                "EM block [postal_code]: left out, no record holds a value for postal_code",
                "EM block [name_kana, birth_date]: left out, no record holds a value for "
                "birth_date",
            ],
        ),
        (
            lambda: person_records(people=1100, duplicates=0, email=True, per_postal_code=1),
            [
                "EM block [postal_code]: left out, 0 pair(s), fewer than em_min_pairs 100",
                "EM block [name_kana, birth_date]: left out, 0 pair(s), fewer than em_min_pairs "
                "100",
            ],
        ),
    ],
    ids=["em-columns-empty", "em-blocks-without-pairs"],
)
def test_without_a_trainable_em_block_matching_is_skipped_and_rules_still_link(
    con, config, records, notes
):
    contacts, shops, _ = records()
    # the e-mail the shop account shares with its contact is the only link
    shops += [shop(9000 + i, f"p{i}@example.jp", "山田 花子", "ヤマダ ハナコ", None, postal=None)
              for i in range(3)]  # fmt: skip
    _create(con, contacts=contacts, shops=shops)
    summary = resolve(con, DAY1, "run-1", config)

    assert summary["probabilistic_matching"] == "skipped"
    assert summary["probabilistic_skipped_reason"] == "no EM block can be trained"
    assert all(n in summary["probabilistic_notes"] for n in notes)
    assert run_row(con, "run-1") == ("skipped", "no EM block can be trained",
                                     summary["probabilistic_notes"])  # fmt: skip
    ids = customer_of(con)
    assert all(ids[f"shop:{9000 + i}"] == ids[f"crm:C{i}"] for i in range(3))
    graph_rules = con.execute(
        "select distinct link_rule from identity.identity_graph order by 1").fetchall()  # fmt: skip
    assert graph_rules == [("anchor",), ("email",)]
    assert summary["probabilistic_links"] == 0 and summary["pairs_compared"] == 0
    assert con.execute("select count(*) from identity.match_models").fetchall()[0][0] == 0


def test_below_min_records_the_reason_is_recorded_the_same_way(con, config):
    contacts, shops, _ = person_records(people=20, duplicates=5)
    _create(con, contacts=contacts, shops=shops)
    summary = resolve(con, DAY1, "run-1", config)
    reason = "25 CRM/shop records, fewer than min_records 1000"
    assert summary["probabilistic_matching"] == "skipped"
    assert summary["probabilistic_skipped_reason"] == reason
    assert run_row(con, "run-1") == ("skipped", reason, [])


def test_a_model_trained_without_a_column_is_retrained_once_the_column_holds_values(con, config):
    contacts, shops, _ = person_records()
    _create(con, contacts=contacts, shops=shops)
    resolve(con, DAY1, "run-1", config)
    # the next day the CRM starts keeping e-mails: same records, a column no longer empty
    contacts, shops, _ = person_records(email=True)
    _create(con, contacts=contacts, shops=shops)
    summary = resolve(con, DAY2, "run-2", config)
    assert summary["probabilistic_model"] == "trained"
    models = con.execute("select model from identity.match_models order by trained_at").fetchall()
    compared = {c["output_column_name"] for c in json.loads(models[-1][0])["comparisons"]}
    assert "email" in compared and len(models) == 2
    assert "prior rule [email]: left out" not in " ".join(summary["probabilistic_notes"])


def _plan(rows: dict, **settings):
    """plan_training on `rows` (column -> values), under the project's settings changed by
    `settings`."""
    from splink import DuckDBAPI

    config = load_config(PROJECT_ROOT / "config" / "identity.yml").probabilistic
    config = dataclasses.replace(config, **settings)
    columns = ["name", "name_kana", "birth_date", "postal_code", "prefecture", "phone", "email"]
    count = len(next(iter(rows.values())))
    table = pa.table(
        {
            "record_id": [f"r{i}" for i in range(count)],
            **{c: pa.array(rows.get(c, [None] * count), pa.string()) for c in columns},
        }
    )
    mem = duckdb.connect()
    mem.register("rows", table)
    mem.execute("create table match_input as select * from rows")
    return plan_training(mem, DuckDBAPI(mem), config, filled_columns(mem, config))


def test_the_plan_says_what_each_setting_lacks():
    names = ["佐藤花子", "佐藤花子", "鈴木一郎", "田中二郎", "高橋三郎"]
    kana = ["サトウハナコ", "サトウハナコ", "スズキイチロウ", "タナカジロウ", "タカハシサブロウ"]
    plan = _plan(
        {
            "name": names,
            "name_kana": kana,
            "birth_date": ["1980-01-01", "1980-01-01", "1970-02-02", None, None],
            "postal_code": ["100-0001", "100-0001", "100-0002", "100-0003", "100-0003"],
            "phone": ["+819011112222", None, None, None, None],
            "email": ["a@example.jp"] * 5,
        },
        em_min_pairs=2,
    )
    assert plan.skipped is None
    assert plan.em_rules == (("postal_code",),)
    assert {c.column for c in plan.comparisons} == {"name", "name_kana", "birth_date",
                                                    "postal_code", "email"}  # fmt: skip
    assert plan.notes == (
        "comparison phone: left out, only one record holds a value",
        "EM block [name_kana, birth_date]: left out, 1 pair(s), fewer than em_min_pairs 2",
        "prior rule [phone]: left out, no two records share a value",
        "prior: the prior rules find 10 of 10 pairs, more than prior_recall allows; 0.1 "
        "matching pairs per record assumed (fallback_matches_per_record): 0.05",
        "comparison postal_code: m not estimated (every EM block blocks on it), Splink's "
        "default m used",
    )
    assert plan.prior == pytest.approx(0.05)


@pytest.mark.parametrize(
    "rows, skipped",
    [
        ({"name": ["佐藤花子"]}, "fewer than two records: no pair to estimate u on"),
        ({"prefecture": ["東京都"] * 3}, "no compared column holds values"),
    ],
)
def test_the_plan_says_why_nothing_can_be_trained(rows, skipped):
    assert _plan(rows).skipped == skipped
