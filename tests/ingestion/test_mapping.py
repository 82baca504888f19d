"""A source in its own shape, mapped to the contract by configuration alone: headers in
Japanese, はい/いいえ consent, slash dates in JST, yen with separators, dollars in cents."""

from __future__ import annotations

import textwrap

import polars as pl
import pytest

from crm360.warehouse import connect
from ingestion.config import load_sources_config
from ingestion.contracts import ContractError, load_contract
from ingestion.files import FileOptions, load_files
from ingestion.mapping import ObjectMapping, conform
from ingestion.raw import load_object

CONTACTS = load_contract("crm")["contacts"]
ITEMS = load_contract("shop")["order_items"]


def _frame(**columns) -> pl.DataFrame:
    return pl.DataFrame(columns, schema=dict.fromkeys(columns, pl.String))


def test_usual_boolean_spellings_are_read_without_configuration():
    frame = _frame(
        email_opt_in=["はい", "いいえ", "○", "×", "有", "無", "Yes", "0", "１", "多分", None]
    )
    out = conform(frame, CONTACTS, ObjectMapping(), "x.csv")
    assert out["email_opt_in"].to_list() == [
        "true", "false", "true", "false", "true", "false", "true", "false", "true", "多分", None,
    ]  # fmt: skip


def test_naive_timestamps_are_local_times_of_the_source():
    frame = _frame(created_at=["2026-10-31 23:30:00", "2026-10-31T23:30:00+00:00", "2026-07-01"])
    tokyo = conform(frame, CONTACTS, ObjectMapping(), "x.csv")["created_at"].to_list()
    assert tokyo == [
        "2026-10-31T23:30:00+09:00",
        "2026-10-31T23:30:00+00:00",
        "2026-07-01T00:00:00+09:00",
    ]
    new_york = conform(frame, CONTACTS, ObjectMapping(timezone="America/New_York"), "x.csv")
    # daylight saving time: -04:00 in July and October, -05:00 in winter
    assert new_york["created_at"].to_list()[0] == "2026-10-31T23:30:00-04:00"


def test_formats_read_dates_and_times_as_the_source_writes_them():
    mapping = ObjectMapping(formats={"birth_date": ("%Y/%m/%d", "%Y年%m月%d日"),
                                     "updated_at": ("%Y/%m/%d %H:%M",)})  # fmt: skip
    frame = _frame(birth_date=["1980/04/01", "1975年12月３日", "昭和55年"],
                   updated_at=["2026/10/31 09:15", "2026/10/31 9:15", "yesterday"])  # fmt: skip
    out = conform(frame, CONTACTS, mapping, "x.csv")
    assert out["birth_date"].to_list() == ["1980-04-01", "1975-12-03", "昭和55年"]
    assert out["updated_at"].to_list() == [
        "2026-10-31T09:15:00+09:00", "2026-10-31T09:15:00+09:00", "yesterday"
    ]  # fmt: skip


def test_money_loses_separators_and_minor_units_become_major():
    frame = _frame(unit_price=["¥1,280", "１２８０円", "12.5", " 300 ", "", "abc"])
    out = conform(frame, ITEMS, ObjectMapping(), "x")
    assert out["unit_price"].to_list() == ["1280", "1280", "12.5", "300", None, "abc"]
    cents = conform(
        _frame(unit_price=["1234", "5", "$1,000"]),
        ITEMS,
        ObjectMapping(minor_unit_digits=2, amounts_in_minor_units=True),
        "x",
    )
    assert cents["unit_price"].to_list() == ["12.34", "0.05", "10.00"]


def test_headers_and_codes_are_mapped_and_bad_values_quarantined(tmp_path):
    mapping = ObjectMapping(
        columns={"顧客ID": "contact_id", "メルマガ許可": "email_opt_in", "連絡不可": "do_not_contact",
                 "登録日時": "created_at", "更新日時": "updated_at"},
        values={"do_not_contact": {"不可": "true", "可": "false"}},
    )  # fmt: skip
    frame = pl.DataFrame(
        {"顧客ID": ["1", "2", "3"], "メルマガ許可": ["はい", "いいえ", "たぶん"],
         "連絡不可": ["可", "不可", "可"], "登録日時": ["2026-01-05 10:00:00"] * 3,
         "更新日時": ["2026-01-05 10:00:00"] * 3}
    )  # fmt: skip
    with connect(tmp_path / "w.duckdb") as con:
        result = load_object(con, CONTACTS, frame, "kokyaku.csv", mapping=mapping)
        loaded = con.execute(
            "select contact_id, email_opt_in, do_not_contact, created_at "
            "from raw.crm_contacts order by 1"
        ).fetchall()
        reasons = con.execute("select source_row, reason from raw._quarantine").fetchall()
    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (3, 2, 1)
    assert loaded == [
        ("1", "true", "false", "2026-01-05T10:00:00+09:00"),
        ("2", "false", "true", "2026-01-05T10:00:00+09:00"),
    ]
    assert reasons == [(3, "unparsable boolean in email_opt_in: たぶん")]


def test_a_missing_required_column_names_the_mapping_to_write(tmp_path):
    frame = pl.DataFrame({"顧客ID": ["1"], "メルマガ許可": ["はい"]})
    with connect(tmp_path / "w.duckdb") as con, pytest.raises(ContractError) as error:
        load_object(con, CONTACTS, frame, "kokyaku.csv")
    message = str(error.value)
    assert "kokyaku.csv: required column(s) contact_id" in message
    assert "found: 顧客ID, メルマガ許可" in message
    assert "`columns:` of crm.contacts" in message


def test_cp932_export_with_tabs_and_an_empty_file(tmp_path, monkeypatch):
    config = tmp_path / "sources.yml"
    config.write_text(
        textwrap.dedent(
            """
            sources:
              crm:
                contacts:
                  files: "crm/*.tsv"
                  encoding: cp932
                  delimiter: "\\t"
                  columns: {顧客ID: contact_id, メルマガ許可: email_opt_in, 連絡不可: do_not_contact,
                            登録日時: created_at, 更新日時: updated_at, 姓: last_name}
                  formats: {created_at: "%Y/%m/%d %H:%M", updated_at: "%Y/%m/%d %H:%M"}
            """
        ),
        encoding="utf-8",
    )
    monkeypatch.setenv("CRM360_SOURCES_CONFIG", str(config))
    folder = tmp_path / "src" / "crm"
    folder.mkdir(parents=True)
    text = "顧客ID\t姓\tメルマガ許可\t連絡不可\t登録日時\t更新日時\n1\t髙橋\tはい\tいいえ\t2026/10/01 09:00\t2026/10/02 18:30\n"
    (folder / "a_20261001.tsv").write_bytes(text.encode("cp932"))
    (folder / "b_20261002.tsv").write_bytes(b"")
    crm = load_sources_config()["crm"]
    obj = crm.objects["contacts"]
    options = FileOptions(obj.encodings, obj.delimiter, ObjectMapping.of(crm, obj))
    with connect(tmp_path / "w.duckdb") as con:
        results = load_files(con, CONTACTS, tmp_path / "src", obj.files, None, None, options)
        rows = con.execute(
            "select contact_id, last_name, email_opt_in, updated_at from raw.crm_contacts"
        ).fetchall()
        files = con.execute("select file_name, encoding from raw._files order by 1").fetchall()
    assert [(r.rows_read, r.rows_loaded) for r in results] == [(1, 1), (0, 0)]
    assert rows == [("1", "髙橋", "true", "2026-10-02T18:30:00+09:00")]
    assert files == [("crm/a_20261001.tsv", "cp932"), ("crm/b_20261002.tsv", "cp932")]


def test_an_object_whose_files_never_arrived_is_named_in_the_outcome(tmp_path, monkeypatch):
    from datetime import UTC, datetime

    from ingestion import ingest

    config = tmp_path / "sources.yml"
    config.write_text(
        'sources:\n  social:\n    mentions: {files: "social/mentions_*.jsonl"}\n'
        '    referrals: {files: "social/referrals.csv"}\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("CRM360_SOURCES_CONFIG", str(config))
    folder = tmp_path / "src" / "social"
    folder.mkdir(parents=True)
    (folder / "mentions_20261030.jsonl").write_bytes(b"")  # an empty export: no rows, no error
    with connect(tmp_path / "w.duckdb") as con:
        outcome = ingest("social", con, tmp_path / "src", datetime(2026, 11, 1, tzinfo=UTC))
        tables = con.execute(
            "select table_name from information_schema.tables where table_schema = 'raw' "
            "and table_name like 'social_%' order by 1"
        ).fetchall()
    assert [(r.object, r.rows_read) for r in outcome.loads] == [("mentions", 0)]
    assert outcome.skipped is None
    assert outcome.notes == [
        f"social.mentions: no rows yet from files 'social/mentions_*.jsonl' under {tmp_path / 'src'}",
        f"social.referrals: no rows yet from files 'social/referrals.csv' under {tmp_path / 'src'}",
    ]
    assert outcome.as_dict()["feeds"]  # what the marts lose, for the run report
    # the staging models read empty tables rather than failing on missing ones
    assert tables == [("social_mentions",), ("social_referrals",)]
