"""Audience exports happen once per published run, only move forward, stay inside their folder,
run the predicate that was checked, and never write a removed person out in plain text.

Each test reproduces one fault against the real publisher and asserts on the files a marketing
tool would read.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from datetime import date

import polars as pl
import pytest

import activation.publish as publish
from activation import hashing
from activation.audiences import AudienceDefinitionError, Destination, load_audience
from crm360.warehouse import connect
from tests.activation.helpers import write_base, write_definition

PASSED = {"status": "passed"}
DAY_1, DAY_2 = "2026-11-01", "2026-11-02"

EVERY_FORMAT = """name: everyone
description: every customer, in every format
owner: test
channel: email
where: "true"
columns: [customer_id, email, full_name, total_revenue]
destinations:
  - {name: plain, format: csv}
  - {name: sjis, format: csv, encoding: cp932}
  - {name: share, format: parquet}
  - {name: google, format: google_customer_match}
  - {name: meta, format: meta_custom_audience}
"""


@pytest.fixture
def con(settings):
    with connect(settings.warehouse) as connection:
        yield connection


@pytest.fixture
def everyone(tmp_path):
    return load_audience(write_definition(tmp_path, "everyone", EVERY_FORMAT))


def read_rows(path, encoding="utf-8"):
    return list(csv.DictReader(io.StringIO(path.read_bytes().decode(encoding))))


def tree(folder):
    """Every file under `folder` with its bytes (the temporary folders excluded)."""
    if not folder.exists():
        return {}
    return {
        p.relative_to(folder): p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".tmp-") for part in p.parts)
    }


# --- 1. an older run never moves the export back in time ------------------------------------


def test_an_older_run_after_a_newer_one_is_refused_and_writes_nothing(con, everyone, settings):
    """Fault: running day 2 then day 1 (a late retry, a replayed Asset event) moved the files
    and `latest.json` back to day 1 and emitted deltas that reversed day 2's."""
    write_base(con, [{"customer_id": "cus_a", "as_of_date": DAY_2},
                     {"customer_id": "cus_e", "as_of_date": DAY_2}])  # fmt: skip
    publish.publish_audience(con, everyone, settings.export_dir, "day2", PASSED)
    audience_dir = settings.export_dir / "everyone"
    latest = json.loads((audience_dir / "latest.json").read_text())
    assert latest["as_of_date"] == DAY_2
    before = tree(settings.export_dir)

    write_base(con, [{"customer_id": "cus_a", "as_of_date": DAY_1},
                     {"customer_id": "cus_d", "as_of_date": DAY_1}])  # fmt: skip
    with pytest.raises(publish.StaleExportError) as raised:
        publish.publish_audience(con, everyone, settings.export_dir, "day1", PASSED)
    message = str(raised.value)
    assert DAY_1 in message and DAY_2 in message and "'day2'" in message
    # the same, when the caller passes the as-of date
    with pytest.raises(publish.StaleExportError, match=f"as of {DAY_1}, older than {DAY_2}"):
        publish.publish_audience(
            con, everyone, settings.export_dir, "day1", PASSED, as_of=date(2026, 11, 1)
        )

    assert tree(settings.export_dir) == before
    assert sorted(p.name for p in audience_dir.iterdir()) == ["day2", "latest.json"]


def test_marts_without_an_as_of_date_are_refused_once_one_is_recorded(con, everyone, settings):
    """Fault guarded: marts that hold no one (no as-of date) must not pass as newer than the
    export `latest.json` points to, nor replace it with an empty audience."""
    write_base(con, [{"customer_id": "cus_a", "as_of_date": DAY_2}])
    publish.publish_audience(con, everyone, settings.export_dir, "day2", PASSED)
    before = tree(settings.export_dir)
    write_base(con, [])
    with pytest.raises(publish.StaleExportError, match=f"have no as-of date, older than {DAY_2}"):
        publish.publish_audience(con, everyone, settings.export_dir, "empty", PASSED)
    assert tree(settings.export_dir) == before


def test_a_rerun_with_the_same_as_of_date_is_allowed(con, everyone, settings):
    """Fault guarded: refusing older runs must not refuse a retry of the newest one, or a new
    run id over the same marts."""
    write_base(con, [{"customer_id": "cus_a", "as_of_date": DAY_2}])
    publish.publish_audience(con, everyone, settings.export_dir, "day2", PASSED)
    again = publish.publish_audience(con, everyone, settings.export_dir, "day2", PASSED)
    other = publish.publish_audience(con, everyone, settings.export_dir, "manual", PASSED)

    assert again["rows"] == other["rows"] == 1
    latest = json.loads((settings.export_dir / "everyone" / "latest.json").read_text())
    assert (latest["run_id"], latest["as_of_date"]) == ("manual", DAY_2)
    manifest = json.loads(
        (settings.export_dir / "everyone" / "manual" / "manifest.json").read_text()
    )
    assert manifest["as_of_date"] == DAY_2


def test_the_as_of_date_is_the_marts_own(con, everyone, settings):
    """Fault guarded: the recorded as-of date must be the published marts' (customer_360's),
    not a clock or a run id."""
    write_base(con, [{"customer_id": "cus_a", "as_of_date": DAY_1}])
    con.execute("create table marts.customer_360 as select date '2026-11-03' as as_of_date")
    assert publish.marts_as_of(con) == date(2026, 11, 3)
    publish.publish_audience(con, everyone, settings.export_dir, "day3", PASSED)
    latest = json.loads((settings.export_dir / "everyone" / "latest.json").read_text())
    assert latest["as_of_date"] == "2026-11-03"


# --- 2. nothing is written outside the export folder ----------------------------------------


def test_a_symlinked_audience_folder_cannot_steer_files_outside(con, everyone, settings, tmp_path):
    """Fault: the audience folder was joined, never resolved; a symbolic link in its place
    sent the files (members with e-mails) wherever it pointed."""
    write_base(con, [{"customer_id": "cus_a"}])
    outside = tmp_path / "outside"
    outside.mkdir()
    settings.export_dir.mkdir(parents=True)
    (settings.export_dir / "everyone").symlink_to(outside, target_is_directory=True)

    with pytest.raises(publish.UnsafeExportPathError, match="audience folder .* not inside"):
        publish.publish_audience(con, everyone, settings.export_dir, "run1", PASSED)
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("run_id", ["..", ".", "", ".tmp-run1"])
def test_a_run_id_cannot_name_a_folder_outside_its_audience(con, everyone, settings, run_id):
    """Fault: run id '..' named the export folder itself as the run folder, '.' or '' the
    audience folder; every file was written, then the swap tried to rename that folder away
    (only the operating system stopped it, leaving the temporary folder behind)."""
    write_base(con, [{"customer_id": "cus_a"}])
    publish.publish_audience(con, everyone, settings.export_dir, "run1", PASSED)
    audience_dir = settings.export_dir / "everyone"
    before, listing = tree(settings.export_dir), sorted(audience_dir.iterdir())

    with pytest.raises(publish.UnsafeExportPathError, match="run folder"):
        publish.publish_audience(con, everyone, settings.export_dir, run_id, PASSED)
    assert tree(settings.export_dir) == before
    assert sorted(audience_dir.iterdir()) == listing  # no temporary folder either


def test_names_that_escape_are_refused_even_past_the_schema(con, everyone, settings, tmp_path):
    """Fault: only the definition schema's name pattern kept names inside the export folder; an
    Audience or Destination built in code, or a tampered `latest.json`, could still escape."""
    write_base(con, [{"customer_id": "cus_a"}])
    publish.publish_audience(con, everyone, settings.export_dir, "run1", PASSED)
    before = tree(tmp_path)

    escaping = dataclasses.replace(everyone, name="../escaped")
    with pytest.raises(publish.UnsafeExportPathError, match="audience folder"):
        publish.publish_audience(con, escaping, settings.export_dir, "run2", PASSED)
    bad = Destination("../../../escaped", "csv")
    sneaky = dataclasses.replace(everyone, destinations=(bad,))
    with pytest.raises(publish.UnsafeExportPathError, match="file"):
        publish.publish_audience(con, sneaky, settings.export_dir, "run2", PASSED)
    assert tree(tmp_path) == before
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "escaped.csv").exists()

    pointer = settings.export_dir / "everyone" / "latest.json"
    pointer.write_text(json.dumps({**json.loads(pointer.read_text()), "path": "../../.."}))
    with pytest.raises(publish.UnsafeExportPathError, match="previous run folder"):
        publish.publish_audience(con, everyone, settings.export_dir, "run2", PASSED)
    assert not (settings.export_dir / "everyone" / "run2").exists()

    pointer.write_text(json.dumps({**json.loads(pointer.read_text()), "path": "run1"}))
    manifest = settings.export_dir / "everyone" / "run1" / "manifest.json"
    delta = {"previous_run_id": "..", "added": 0, "removed": 0}
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "delta": delta}))
    with pytest.raises(publish.UnsafeExportPathError, match="previous run folder"):
        publish.publish_audience(con, everyone, settings.export_dir, "run1", PASSED)


# --- 3. the predicate that runs is the one that was checked ---------------------------------

HEADER = "name: probe\ndescription: test\nowner: me\nchannel: email\n"
DESTINATION = "destinations:\n  - {name: esp, format: csv}\n"


@pytest.mark.parametrize(
    ("where", "problem"),
    [
        ("secret_score.lower() = 'x'", "unknown column(s) secret_score"),
        ("lower(secret_score).upper() = 'X'", "unknown column(s) secret_score"),
        ("coalesce(email, secret_score.lower()) = 'x'", "unknown column(s) secret_score"),
        ("regexp_matches(email, '(a+)+$')", "function 'regexp_like' is not allowed"),
        ("regexp_full_match(email, 'a.*')", "function 'regexp_full_match' is not allowed"),
        ("email.getenv() = 'x'", "function 'getenv' is not allowed"),
        ("x.email.lower() = 'a'", "must not be qualified"),
        ("order_count > ?", "must not contain a parameter"),
    ],
)
def test_columns_and_functions_are_checked_under_any_syntax(tmp_path, where, problem):
    """Fault: a method call (`col.lower()`) hid its column from the column check, and a
    function sqlglot models as a predicate (`regexp_matches`) skipped the function list."""
    path = write_definition(tmp_path, "probe", HEADER + f'where: "{where}"\n' + DESTINATION)
    with pytest.raises(AudienceDefinitionError) as raised:
        load_audience(path)
    assert problem in str(raised.value)


def test_a_trailing_comment_cannot_break_the_export_query(con, settings, tmp_path):
    """Fault: the raw `where` text was pasted into the export query, so a trailing
    `-- comment` (accepted by validation) commented out the rest of the query."""
    where = "is_dormant and email.lower() like 'cus_%'  -- the dormant ones"
    body = HEADER + f'where: "{where}"\n' + DESTINATION
    audience = load_audience(write_definition(tmp_path, "probe", body))
    write_base(con, [{"customer_id": "cus_a"}, {"customer_id": "cus_b", "is_dormant": False}])

    query = publish.audience_query(audience)
    assert "--" not in query and "the dormant ones" not in query
    out = publish.publish_audience(con, audience, settings.export_dir, "run1", PASSED)
    assert out["rows"] == 1
    rows = read_rows(settings.export_dir / "probe" / "run1" / "esp.csv")
    assert [r["customer_id"] for r in rows] == ["cus_a"]


def test_an_unchecked_predicate_never_reaches_the_warehouse(con, everyone):
    """Fault: the export query trusted `Audience.where`, so a definition built in code skipped
    every check."""
    for where in ("getenv('HOME') is not null", "true) or (1 = 1", "1 = 1; drop table x"):
        with pytest.raises(AudienceDefinitionError):
            publish.audience_query(dataclasses.replace(everyone, where=where))


# --- 4. a removed person is not written out in plain text ----------------------------------


def test_removal_files_carry_only_the_identifiers_needed_to_remove(con, everyone, settings):
    """Fault: `.removed` files repeated every column the person was sent with, so someone who
    asked for deletion reappeared with e-mail, name and revenue in plain text."""
    gone = {"customer_id": "cus_a", "email": "hanako.sato@example.jp", "full_name": "佐藤 花子",
            "total_revenue": 98765.5, "phone_e164": "+819011112222"}  # fmt: skip
    write_base(con, [gone, {"customer_id": "cus_b"}])
    publish.publish_audience(con, everyone, settings.export_dir, "run1", PASSED)
    write_base(con, [{**gone, "is_deletion_requested": True}, {"customer_id": "cus_b"}])
    out = publish.publish_audience(con, everyone, settings.export_dir, "run2", PASSED)
    folder = settings.export_dir / "everyone" / "run2"
    assert out["removed"] == 1

    for name, encoding in (("plain.removed.csv", "utf-8"), ("sjis.removed.csv", "cp932")):
        assert read_rows(folder / name, encoding) == [{"customer_id": "cus_a"}]
    assert pl.read_parquet(folder / "share.removed.parquet").to_dicts() == [
        {"customer_id": "cus_a"}
    ]
    google = read_rows(folder / "google.removed.csv")
    assert google == [
        {
            "Email": hashing.google_email(gone["email"]),
            "Phone": hashing.google_phone(gone["phone_e164"]),
            "Country": "JP",
        }
    ]
    meta = read_rows(folder / "meta.removed.csv")
    assert [r["email"] for r in meta] == [hashing.meta_email(gone["email"])]

    plaintext = ("hanako.sato", "佐藤", "98765", "9011112222")
    for path in folder.iterdir():
        if path.suffix == ".csv":
            text = path.read_bytes().decode("cp932" if "sjis" in path.name else "utf-8")
        elif path.suffix == ".parquet":
            text = json.dumps(pl.read_parquet(path).to_dicts(), ensure_ascii=False)
        else:
            text = path.read_text(encoding="utf-8")
        assert not any(value in text for value in plaintext), path.name
    manifest = json.loads((folder / "manifest.json").read_text())
    removed = {f["name"]: f["columns"] for f in manifest["files"] if f["part"] == "removed"}
    assert removed["plain.removed.csv"] == removed["share.removed.parquet"] == ["customer_id"]
    assert removed["google.removed.csv"] == ["Email", "Phone", "Country"]
