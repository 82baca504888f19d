"""Loading a source object: contract checks, quarantine with reasons, reconciled counts."""

from __future__ import annotations

import json

import polars as pl
import pytest

from crm360.warehouse import connect
from ingestion.contracts import ContractError, load_contract
from ingestion.crm_contacts import load_contacts, read_contacts

HEADER = (
    "contact_id,last_name,first_name,last_name_kana,first_name_kana,email,phone,postal_code,"
    "prefecture,birth_date,email_opt_in,do_not_contact,created_at,updated_at"
)
GOOD = "C1,佐藤,花子,サトウ,ハナコ, A@x.com ,090-1234-5678,150-0002,東京都,1990-01-02,true,false,2024-01-01T10:00:00+09:00,2024-01-02T10:00:00+09:00"  # noqa: E501
TS = "2024-01-01T10:00:00+09:00"


def write_csv(path, lines, encoding="utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\n".join([HEADER, *lines]) + "\n").encode(encoding))


def test_bad_rows_are_quarantined_with_reasons_and_counts_reconcile(settings):
    write_csv(
        settings.source_dir / "crm_contacts.csv",
        [
            GOOD,
            f",x,y,,,,,,,,true,false,{TS},{TS}",
            f"C3,a,b,,,,,,,1990-13-45,maybe,false,{TS},{TS}",
            f"C1,dup,,,,,,,,,true,false,{TS},{TS}",
            f"C4,a,b,,,,,,,,true,false,not-a-time,{TS}",
        ],
    )
    with connect(settings.warehouse) as con:
        result = load_contacts(con, settings.source_dir, run_id="r1")
        loaded = con.execute("select contact_id, email from raw.crm_contacts").fetchall()
        quarantine = con.execute(
            "select source_row, reason, record from raw._quarantine order by source_row"
        ).fetchall()
        audit = con.execute(
            "select rows_read, rows_loaded, rows_quarantined from raw._loads"
        ).fetchall()

    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (5, 1, 4)
    assert audit == [(5, 1, 4)]
    # raw keeps the value exactly as received; normalising is staging's job
    assert loaded == [("C1", " A@x.com ")]
    reasons = {row: reason for row, reason, _ in quarantine}
    assert reasons[2].startswith("missing required value in contact_id")
    assert "unparsable date in birth_date: 1990-13-45" in reasons[3]
    assert "unparsable boolean in email_opt_in: maybe" in reasons[3]
    assert reasons[4] == "duplicate primary key contact_id: C1"
    assert reasons[5] == "unparsable timestamp in created_at: not-a-time"
    assert json.loads(quarantine[1][2])["birth_date"] == "1990-13-45"


def test_missing_required_column_fails_naming_file_and_column(settings):
    path = settings.source_dir / "crm_contacts.csv"
    path.parent.mkdir(parents=True)
    path.write_text("contact_id,email\nC1,a@x.com\n", encoding="utf-8")
    with connect(settings.warehouse) as con:
        with pytest.raises(
            ContractError, match=r"crm_contacts\.csv: required column\(s\) email_opt_in"
        ):
            load_contacts(con, settings.source_dir)


def test_failed_load_leaves_previous_load_untouched(settings, monkeypatch):
    write_csv(settings.source_dir / "crm_contacts.csv", [GOOD])
    with connect(settings.warehouse) as con:
        load_contacts(con, settings.source_dir)
        contract = load_contract("crm")["contacts"]
        # a load that breaks after the raw table was replaced inside the transaction
        import ingestion.raw as raw

        monkeypatch.setattr(raw, "LoadResult", None)
        frame = pl.DataFrame(
            {c: ["C9"] if c == "contact_id" else ["true"] for c in contract.columns}
        )
        with pytest.raises(TypeError):
            raw.load_object(con, contract, frame, "broken.csv")
        assert con.execute("select contact_id from raw.crm_contacts").fetchall() == [("C1",)]
        assert con.execute("select count(*) from raw._loads").fetchone() == (1,)


def test_shift_jis_export_reads_the_same_as_utf8(tmp_path):
    write_csv(tmp_path / "utf8.csv", [GOOD])
    write_csv(tmp_path / "sjis.csv", [GOOD], encoding="cp932")
    utf8 = read_contacts(tmp_path / "utf8.csv", "utf-8")
    sjis = read_contacts(tmp_path / "sjis.csv", "cp932")
    assert sjis.equals(utf8)
    assert sjis["last_name"][0] == "佐藤"


def test_invalid_encoding_is_a_clear_error(tmp_path):
    (tmp_path / "bad.csv").write_bytes(HEADER.encode() + b"\n\x82\xff\n")
    with pytest.raises(ContractError, match=r"bad\.csv: not valid cp932 at byte"):
        read_contacts(tmp_path / "bad.csv", "cp932")
