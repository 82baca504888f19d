"""Publishing audience files: complete or not at all, suppressed for every format, with a stable
control group, deltas, and a manifest that tells the truth."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import random

import polars as pl
import pytest
from conftest import MARTS_AS_OF

import activation.publish as publish
from activation import hashing
from activation.audiences import load_audience, load_audiences
from crm360.warehouse import connect
from tests.activation import helpers
from tests.activation.helpers import write_base, write_definition

PASSED = {"status": "passed"}
# fixtures shared with other activation tests
warehouse = helpers.warehouse
audience = helpers.audience


def read_rows(path, encoding="utf-8"):
    return list(csv.DictReader(io.StringIO(path.read_bytes().decode(encoding))))


def test_publish_writes_files_manifest_and_latest(warehouse, audience, settings):
    out = publish.publish_audience(warehouse, audience, settings.export_dir, "run:1+x", PASSED)

    folder = settings.export_dir / "dormant" / "run_1_x"
    assert out["rows"] == 2 and out["path"] == str(folder)
    rows = read_rows(folder / "esp.csv")
    assert [r["customer_id"] for r in rows] == ["cus_a", "cus_d"]  # cus_b opted out
    assert list(rows[0]) == ["customer_id", "email", "full_name"]
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["row_count"] == 2
    assert manifest["run_id"] == "run:1+x"
    assert manifest["columns"] == ["customer_id", "email", "full_name"]
    assert manifest["quality"] == PASSED
    assert manifest["counts"]["selected"] == 3
    assert manifest["counts"]["suppressed"]["opted_out"] == 1
    assert manifest["definition_sha256"] == audience.definition_sha256
    full = next(f for f in manifest["files"] if f["name"] == "esp.csv")
    assert full["sha256"] == hashlib.sha256((folder / "esp.csv").read_bytes()).hexdigest()
    assert {f["name"] for f in manifest["files"]} == {"esp.csv", "esp.added.csv", "esp.removed.csv"}
    latest = json.loads((settings.export_dir / "dormant" / "latest.json").read_text())
    assert latest["run_id"] == "run:1+x" and latest["path"] == "run_1_x"
    assert latest["as_of_date"] == manifest["as_of_date"] == "2026-11-01"


def snapshot(audience_dir):
    return {
        p.relative_to(audience_dir): p.read_bytes()
        for p in audience_dir.rglob("*")
        if p.is_file() and not p.relative_to(audience_dir).parts[0].startswith(".tmp-")
    }


def test_crash_while_writing_files_leaves_previous_export_and_latest_intact(
    warehouse, audience, settings, monkeypatch
):
    publish.publish_audience(warehouse, audience, settings.export_dir, "run1", PASSED)
    audience_dir = settings.export_dir / "dormant"
    before = snapshot(audience_dir)

    warehouse.execute("delete from marts.audience_base where customer_id = 'cus_a'")
    real_write, written = publish._write, []

    def crash_after_first_file(rows, path, destination):
        if written:
            raise OSError("disk full")
        written.append(path)
        return real_write(rows, path, destination)

    monkeypatch.setattr(publish, "_write", crash_after_first_file)
    with pytest.raises(OSError, match="disk full"):
        publish.publish_audience(warehouse, audience, settings.export_dir, "run2", PASSED)

    assert written  # the crash came in the middle of the export, after a file was written
    assert snapshot(audience_dir) == before
    assert not (audience_dir / "run2").exists()


def test_crash_on_the_swap_leaves_previous_export_and_latest_intact(
    warehouse, audience, settings, monkeypatch
):
    publish.publish_audience(warehouse, audience, settings.export_dir, "run1", PASSED)
    audience_dir = settings.export_dir / "dormant"
    before = snapshot(audience_dir)
    real_replace = os.replace

    def crash_on_swap(src, dst):
        if str(dst).endswith("run2"):
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(publish.os, "replace", crash_on_swap)
    with pytest.raises(OSError, match="disk full"):
        publish.publish_audience(warehouse, audience, settings.export_dir, "run2", PASSED)
    assert snapshot(audience_dir) == before


def test_rerun_of_the_same_run_replaces_its_own_folder(warehouse, audience, settings):
    publish.publish_audience(warehouse, audience, settings.export_dir, "run1", PASSED)
    warehouse.execute("delete from marts.audience_base where customer_id = 'cus_a'")
    publish.publish_audience(warehouse, audience, settings.export_dir, "run1", PASSED)
    rows = read_rows(settings.export_dir / "dormant" / "run1" / "esp.csv")
    assert [r["customer_id"] for r in rows] == ["cus_d"]
    assert sorted(p.name for p in (settings.export_dir / "dormant").iterdir()) == [
        "latest.json",
        "run1",
    ]


def test_a_rerun_of_the_same_run_keeps_its_deltas(warehouse, settings, tmp_path):
    """A retry or a duplicate Asset event must not compare the run with itself: the removals
    would never reach the marketing tool."""
    body = ALL_FORMATS.replace("control_group_percent: 20", "control_group_percent: 0")
    audience = load_audience(write_definition(tmp_path, "everyone", body))
    publish.publish_audience(warehouse, audience, settings.export_dir, "run1", PASSED)
    write_base(warehouse, [{"customer_id": "cus_a"}, {"customer_id": "cus_e"}])
    first = publish.publish_audience(warehouse, audience, settings.export_dir, "run2", PASSED)
    folder = settings.export_dir / "everyone" / "run2"
    before = {p.name: p.read_bytes() for p in folder.glob("*.removed.*")}

    again = publish.publish_audience(warehouse, audience, settings.export_dir, "run2", PASSED)

    assert (again["added"], again["removed"]) == (first["added"], first["removed"]) == (1, 2)
    assert [r["customer_id"] for r in read_rows(folder / "plain.removed.csv")] == ["cus_c", "cus_d"]
    assert {p.name: p.read_bytes() for p in folder.glob("*.removed.*")} == before
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["delta"] == {"previous_run_id": "run1", "added": 1, "removed": 2}


# --- suppression, every format ----------------------------------------------------------------

ALL_FORMATS = """name: everyone
description: every customer, in every format
owner: test
channel: email
where: "true"
columns: [customer_id, email, full_name]
destinations:
  - {name: plain, format: csv}
  - {name: sjis, format: csv, encoding: cp932}
  - {name: share, format: parquet}
  - {name: google, format: google_customer_match}
  - {name: meta, format: meta_custom_audience}
control_group_percent: 20
contact_caps: {max_contacts_7d: 2, max_contacts_30d: 5}
"""


def random_customers(seed: int, n: int) -> list[dict]:
    rng = random.Random(seed)
    flag = lambda p: rng.random() < p  # noqa: E731
    return [
        {
            "customer_id": f"cus_{i:04d}",
            "email": f"Person.{i}@Example.com " if flag(0.9) else None,
            "phone_e164": f"+8190{i:08d}" if flag(0.7) else None,
            "is_email_opted_in": flag(0.8),
            "has_unsubscribed": flag(0.1),
            "is_do_not_contact": flag(0.05),
            "is_deletion_requested": flag(0.03),
            "has_hard_bounced": flag(0.05),
            "has_valid_email": flag(0.95),
            "send_count_7d": rng.randint(0, 3),
            "send_count_30d": rng.randint(0, 7),
        }
        for i in range(n)
    ]


def suppressed(row: dict) -> bool:
    return (
        row["is_deletion_requested"]
        or row["is_do_not_contact"]
        or not row["is_email_opted_in"]
        or row["has_unsubscribed"]
        or row["has_hard_bounced"]
        or row["email"] is None
        or not row["has_valid_email"]
        or row["send_count_7d"] >= 2
        or row["send_count_30d"] >= 5
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_suppressed_or_control_customer_appears_in_any_file(settings, tmp_path, seed):
    customers = random_customers(seed, 400)
    audience = load_audience(write_definition(tmp_path, "everyone", ALL_FORMATS))
    with connect(settings.warehouse) as con:
        write_base(con, customers)
        out = publish.publish_audience(con, audience, settings.export_dir, "run1", PASSED)
    folder = settings.export_dir / "everyone" / "run1"

    blocked = [c for c in customers if suppressed(c)]
    control = [
        c for c in customers
        if not suppressed(c) and publish.in_control_group("everyone", c["customer_id"], 20)
    ]  # fmt: skip
    expected = {c["customer_id"] for c in customers} - {c["customer_id"] for c in blocked + control}
    assert blocked and control and expected
    never = blocked + control
    never_ids = {c["customer_id"] for c in never}
    never_hashes = {hashing.google_email(c["email"]) for c in never if c["email"]} | {
        hashing.meta_phone(c["phone_e164"]) for c in never if c["phone_e164"]
    }

    assert {r["customer_id"] for r in read_rows(folder / "plain.csv")} == expected
    assert {r["customer_id"] for r in read_rows(folder / "sjis.csv", "cp932")} == expected
    assert set(pl.read_parquet(folder / "share.parquet")["customer_id"]) == expected
    google = read_rows(folder / "google.csv")
    meta = read_rows(folder / "meta.csv")
    assert len(google) == len(meta) == len(expected) == out["rows"]
    hashed = {r["Email"] for r in google} | {r["Phone"] for r in google}
    hashed |= {r["email"] for r in meta} | {r["phone"] for r in meta}
    assert not hashed & never_hashes
    for path in folder.iterdir():  # no file of any kind names a suppressed or control customer
        if path.suffix == ".csv":
            text = path.read_bytes().decode("cp932" if "sjis" in path.name else "utf-8")
            assert not any(cid in text for cid in never_ids), path.name
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["counts"]["suppressed_total"] == len(blocked)
    assert manifest["counts"]["control_group"] == len(control)


# --- formats and hashing ----------------------------------------------------------------------


def test_normalisation_and_hashing_rules():
    # SHA-256 test vector of FIPS 180-2 ("abc")
    assert hashing.sha256_hex("abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    # e-mail: trimmed and lower-cased, for both platforms
    assert hashing.normalise_email("  Taro.Yamada@Example.CO.JP ") == "taro.yamada@example.co.jp"
    assert hashing.google_email(" Taro.Yamada@Example.CO.JP") == hashing.sha256_hex(
        "taro.yamada@example.co.jp"
    )
    # phone: Google hashes E.164 with '+', Meta the digits with the country code
    assert hashing.normalise_phone_e164("090-1234-5678") == "+819012345678"
    assert hashing.normalise_phone_e164("+81 90 1234 5678") == "+819012345678"
    assert hashing.google_phone("090-1234-5678") == hashing.sha256_hex("+819012345678")
    assert hashing.meta_phone("+81 90-1234-5678") == hashing.sha256_hex("819012345678")
    # Meta's country is the lower-case ISO code, hashed; Google's stays plain
    assert hashing.meta_country("JP") == hashing.sha256_hex("jp")
    assert hashing.google_email(None) is None and hashing.meta_phone("") is None


def test_hashing_matches_the_platforms_published_examples():
    # Meta, Conversions API customer information parameters (the same rules as customer lists):
    # "John_Smith@gmail.com" -> john_smith@gmail.com -> 62a14e44...; US "(650)555-1212" ->
    # 16505551212 -> e323ec62...
    assert hashing.meta_email("John_Smith@gmail.com") == (
        "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"
    )
    assert hashing.meta_phone("+1 (650)555-1212") == (
        "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"
    )
    # Google publishes no hashed example; its Customer Match template's phones (country code
    # given, any punctuation) all normalise to the one E.164 form before hashing
    for phone in ("1-800-888-8888", "1(800)888-8888", "+1 800 888 8888"):
        assert hashing.normalise_phone_e164(phone) == "+18008888888"
    assert hashing.google_phone("1(800)888-8888") == hashing.sha256_hex("+18008888888")
    assert hashing.google_email("Test@Gmail.com ") == hashing.sha256_hex("test@gmail.com")


def test_platform_files_have_the_documented_layout(warehouse, settings, tmp_path):
    body = ALL_FORMATS.replace("name: everyone", "name: ads").replace(
        "control_group_percent: 20", "control_group_percent: 0"
    )
    audience = load_audience(write_definition(tmp_path, "ads", body))
    publish.publish_audience(warehouse, audience, settings.export_dir, "run1", PASSED)
    folder = settings.export_dir / "ads" / "run1"
    google = read_rows(folder / "google.csv")
    meta = read_rows(folder / "meta.csv")
    assert list(google[0]) == ["Email", "Phone", "Country"]
    assert list(meta[0]) == ["email", "phone", "country"]
    by_email = {r["Email"]: r for r in google}
    d = by_email[hashing.sha256_hex("cus_d@example.com")]
    assert d["Phone"] == hashing.sha256_hex("+819012345678") and d["Country"] == "JP"
    assert {r["phone"] for r in meta} == {"", hashing.sha256_hex("819012345678")}
    assert {r["country"] for r in meta} == {hashing.sha256_hex("jp")}


def test_cp932_counts_characters_it_cannot_encode(settings, tmp_path):
    audience = load_audience(
        write_definition(
            tmp_path,
            "everyone",
            ALL_FORMATS.replace("control_group_percent: 20", "control_group_percent: 0"),
        )
    )
    with connect(settings.warehouse) as con:
        write_base(
            con, [{"customer_id": "cus_1", "full_name": "𠮷野 太郎"}, {"customer_id": "cus_2"}]
        )
        publish.publish_audience(con, audience, settings.export_dir, "run1", PASSED)
    folder = settings.export_dir / "everyone" / "run1"
    manifest = json.loads((folder / "manifest.json").read_text())
    sjis = next(f for f in manifest["files"] if f["name"] == "sjis.csv")
    assert sjis["unencodable_characters"] == 1 and sjis["encoding"] == "cp932"
    names = [r["full_name"] for r in read_rows(folder / "sjis.csv", "cp932")]
    assert names == ["?野 太郎", "山田 太郎"]
    assert [r["full_name"] for r in read_rows(folder / "plain.csv")][0] == "𠮷野 太郎"


# --- control groups and deltas ----------------------------------------------------------------


def test_control_group_is_stable_and_about_the_configured_share():
    ids = [f"cus_{i:016x}" for i in range(20_000)]
    first = {i for i in ids if publish.in_control_group("a", i, 10)}
    assert first == {i for i in ids if publish.in_control_group("a", i, 10)}
    assert abs(len(first) / len(ids) - 0.10) < 0.01
    other = {i for i in ids if publish.in_control_group("b", i, 10)}
    assert len(first & other) < len(first) * 0.2  # audiences draw independent holdouts
    assert not any(publish.in_control_group("a", i, 0) for i in ids[:1000])


def test_deltas_carry_additions_and_removals_including_a_merged_customer(
    warehouse, settings, tmp_path
):
    body = ALL_FORMATS.replace("control_group_percent: 20", "control_group_percent: 0")
    audience = load_audience(write_definition(tmp_path, "everyone", body))
    publish.publish_audience(warehouse, audience, settings.export_dir, "run1", PASSED)
    # cus_d is merged into cus_a (identity change): only the surviving id remains; cus_e is new
    write_base(warehouse, [{"customer_id": "cus_a"}, {"customer_id": "cus_c"},
                           {"customer_id": "cus_e"}])  # fmt: skip
    out = publish.publish_audience(warehouse, audience, settings.export_dir, "run2", PASSED)
    folder = settings.export_dir / "everyone" / "run2"

    assert (out["added"], out["removed"]) == (1, 1)
    assert [r["customer_id"] for r in read_rows(folder / "plain.added.csv")] == ["cus_e"]
    assert [r["customer_id"] for r in read_rows(folder / "plain.removed.csv")] == ["cus_d"]
    assert [r["customer_id"] for r in read_rows(folder / "plain.csv")] == [
        "cus_a",
        "cus_c",
        "cus_e",
    ]
    # the removal reaches the ad platforms with the identifiers they were sent
    removed = read_rows(folder / "google.removed.csv")
    assert [r["Email"] for r in removed] == [hashing.google_email("cus_d@example.com")]
    assert [r["Phone"] for r in removed] == [hashing.google_phone("+819012345678")]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["delta"] == {"previous_run_id": "run1", "added": 1, "removed": 1}


def test_members_and_control_group_are_recorded_per_run(warehouse, settings, tmp_path):
    audience = load_audience(write_definition(tmp_path, "everyone", ALL_FORMATS))
    write_base(warehouse, [{"customer_id": f"cus_{i:03d}"} for i in range(200)])
    out = publish.publish_audience(warehouse, audience, settings.export_dir, "run1", PASSED)
    for _ in range(2):  # a retried run replaces its rows
        publish.record_members(warehouse, audience, "run1", out["members"])
    rows = warehouse.execute(
        "select is_control, count(*) from activation.audience_members "
        "where run_id = 'run1' and audience = 'everyone' group by 1 order by 1"
    ).fetchall()
    assert rows == [(False, out["rows"]), (True, out["control_group"])]
    assert 20 <= out["control_group"] <= 60


@pytest.mark.slow
def test_shipped_audiences_select_people_on_the_demo(mart_warehouse):
    with connect(mart_warehouse.warehouse, read_only=True) as con:
        assert publish.marts_as_of(con) == MARTS_AS_OF
        for audience in load_audiences():
            _, counts = publish.select_members(con, audience)
            assert counts["selected"] > 0, audience.name
            assert (
                counts["exported"] + counts["control_group"] + counts["suppressed_total"]
                == (counts["selected"])
            )
