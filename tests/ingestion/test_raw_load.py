"""Loading one source object: contract checks, quarantine with reasons, reconciled counts."""

from __future__ import annotations

import json

import polars as pl
import pytest

from crm360.warehouse import connect
from ingestion.contracts import ContractError, load_contract
from ingestion.files import load_files, read_file

HEADER = (
    "contact_id,last_name,first_name,last_name_kana,first_name_kana,email,phone,postal_code,"
    "prefecture,birth_date,email_opt_in,do_not_contact,created_at,updated_at"
)
TS = "2024-01-01T10:00:00+09:00"
GOOD = f"C1,佐藤,花子,サトウ,ハナコ, A@x.com ,090-1234-5678,150-0002,東京都,1990-01-02,true,false,{TS},{TS}"
CONTACTS = load_contract("crm")["contacts"]


def write_csv(path, lines, encoding="utf-8", header=HEADER):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\n".join([header, *lines]) + "\n").encode(encoding))


def load_dir(con, settings, pattern="crm/contacts_*.csv"):
    return load_files(con, CONTACTS, settings.source_dir, pattern, as_of=None)


def test_bad_rows_are_quarantined_with_reasons_and_counts_reconcile(settings):
    write_csv(
        settings.source_dir / "crm" / "contacts_20261030.csv",
        [
            GOOD,
            f",x,y,,,,,,,,true,false,{TS},{TS}",
            f"C3,a,b,,,,,,,1990-13-45,maybe,false,{TS},{TS}",
            f"C1,dup,,,,,,,,,true,false,{TS},{TS}",
            f"C4,a,b,,,,,,,,true,false,not-a-time,{TS}",
        ],
    )
    with connect(settings.warehouse) as con:
        (result,) = load_dir(con, settings)
        loaded = con.execute("select contact_id, email from raw.crm_contacts").fetchall()
        quarantine = con.execute(
            "select source_row, reason, record from raw._quarantine order by source_row"
        ).fetchall()
        audit = con.execute(
            "select rows_read, rows_loaded, rows_quarantined from raw._loads"
        ).fetchall()

    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (5, 1, 4)
    assert audit == [(5, 1, 4)]
    assert loaded == [("C1", " A@x.com ")]  # raw keeps the value as received
    reasons = {row: reason for row, reason, _ in quarantine}
    assert reasons[2].startswith("missing required value in contact_id")
    assert "unparsable date in birth_date: 1990-13-45" in reasons[3]
    assert "unparsable boolean in email_opt_in: maybe" in reasons[3]
    assert reasons[4] == "duplicate primary key contact_id: C1"
    assert reasons[5] == "unparsable timestamp in created_at: not-a-time"
    assert json.loads(quarantine[1][2])["birth_date"] == "1990-13-45"


def test_missing_required_column_fails_naming_file_and_column(settings):
    write_csv(
        settings.source_dir / "crm" / "contacts_20261030.csv",
        ["C1,a@x.com"],
        header="contact_id,email",
    )
    with connect(settings.warehouse) as con:
        with pytest.raises(
            ContractError, match=r"contacts_20261030\.csv: required column\(s\) email_opt_in"
        ):
            load_dir(con, settings)
        assert con.execute("select count(*) from raw._files").fetchone() == (0,)


def test_new_column_is_kept_and_logged(settings, caplog):
    write_csv(settings.source_dir / "crm" / "contacts_20261030.csv", [GOOD])
    write_csv(
        settings.source_dir / "crm" / "contacts_20261031.csv",
        [GOOD.replace("C1,", "C2,") + ",VIP"],
        header=HEADER + ",loyalty_rank",
    )
    with connect(settings.warehouse) as con:
        load_dir(con, settings)
        rows = con.execute(
            "select contact_id, loyalty_rank from raw.crm_contacts order by 1"
        ).fetchall()
    assert rows == [("C1", None), ("C2", "VIP")]
    assert "unexpected column(s) kept: loyalty_rank" in caplog.text


def test_failed_load_leaves_no_rows_and_no_state(settings, monkeypatch):
    write_csv(settings.source_dir / "crm" / "contacts_20261030.csv", [GOOD])
    import ingestion.raw as raw

    monkeypatch.setattr(raw, "LoadResult", None)  # break the load after the rows were inserted
    with connect(settings.warehouse) as con:
        with pytest.raises(TypeError):
            load_dir(con, settings)
        assert con.execute("select count(*) from raw._files").fetchone() == (0,)
        assert con.execute("select count(*) from raw._loads").fetchone() == (0,)
        monkeypatch.undo()
        (result,) = load_dir(con, settings)  # the next run loads the file
    assert result.rows_loaded == 1


def test_shift_jis_file_reads_the_same_as_utf8(tmp_path):
    write_csv(tmp_path / "utf8.csv", [GOOD])
    write_csv(tmp_path / "sjis.csv", [GOOD], encoding="cp932")
    utf8, enc_a, _ = read_file(tmp_path / "utf8.csv", "csv", ("utf-8", "cp932"))
    sjis, enc_b, _ = read_file(tmp_path / "sjis.csv", "csv", ("utf-8", "cp932"))
    assert (enc_a, enc_b) == ("utf-8", "cp932")
    assert sjis.equals(utf8)
    assert sjis["last_name"][0] == "佐藤"


def test_invalid_bytes_quarantine_the_row_not_the_file(settings):
    path = settings.source_dir / "crm" / "contacts_20261030.csv"
    write_csv(path, [GOOD])
    bad = (
        GOOD.replace("C1,", "C2,")
        .replace("花子", "@@")
        .encode("utf-8")
        .replace(b"@@", "花子".encode("cp932"))
    )
    path.write_bytes(path.read_bytes() + bad + b"\n")
    with connect(settings.warehouse) as con:
        (result,) = load_dir(con, settings)
        reasons = con.execute("select reason from raw._quarantine").fetchall()
    assert (result.rows_loaded, result.rows_quarantined) == (1, 1)
    assert reasons == [("invalid utf-8 byte sequence",)]


def test_unknown_encoding_in_a_contract_is_a_clear_error(tmp_path):
    (tmp_path / "a.csv").write_bytes(HEADER.encode() + b"\n\xff\n")
    with pytest.raises(ContractError, match="unknown encoding 'klingon'"):
        read_file(tmp_path / "a.csv", "csv", ("utf-8", "klingon"))


def test_malformed_json_line_is_quarantined(settings):
    folder = settings.source_dir / "web" / "events" / "date=2026-10-30"
    folder.mkdir(parents=True)
    good = '{"event_id": "E1", "anonymous_id": "a", "event_type": "login", "occurred_at": "2026-10-30T10:00:00Z"}'
    (folder / "events.jsonl").write_text(good + "\n" + '{"event_id": "E2", \n', encoding="utf-8")
    contract = load_contract("web")["events"]
    with connect(settings.warehouse) as con:
        (result,) = load_files(
            con, contract, settings.source_dir, "web/events/date=*/events.jsonl", None
        )
        reason = con.execute("select reason from raw._quarantine").fetchone()[0]
    assert (result.rows_loaded, result.rows_quarantined) == (1, 1)
    assert reason.startswith("malformed JSON: ")


def test_malformed_json_lines_are_set_apart_and_the_others_read_as_from_a_clean_file(
    tmp_path, caplog
):
    """Each bad line becomes one row naming what is wrong, in its place; every other line reads
    as it would from a file without bad lines (polars' reader, values as text)."""
    good = [
        {"event_id": "E1", "product_ids": [3, 5], "price": 1.5, "is_new": True},
        {"event_id": "E3", "product_ids": [], "price": None, "is_new": False},
        {"event_id": "E7", "product_ids": None, "price": 2, "is_new": None},
    ]
    lines = [
        json.dumps(good[0]),
        '{"event_id": "E2", ',  # cut off
        json.dumps(good[1]),
        '{"event_id": "E4", "price": NaN}',  # not JSON for polars, valid for Python
        "[1, 2]",  # JSON, not an object
        "",
        json.dumps(good[2]),
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    frame, _, _ = read_file(path, "jsonl", ("utf-8",))
    assert "quarantining them, reading the others" in caplog.text
    assert frame["event_id"].to_list() == ["E1", None, "E3", "E4", None, "E7"]
    assert frame["_malformed_json"].to_list() == [
        None,
        'Expecting property name enclosed in double quotes at column 20: {"event_id": "E2", ',
        None,
        None,
        "not a JSON object: [1, 2]",
        None,
    ]
    assert frame["price"].to_list() == ["1.5", None, None, "nan", None, "2"]
    clean = tmp_path / "clean.jsonl"
    clean.write_text("".join(json.dumps(r) + "\n" for r in good), encoding="utf-8")
    expected, _, _ = read_file(clean, "jsonl", ("utf-8",))
    kept = frame.filter(pl.col("event_id").is_in(["E1", "E3", "E7"])).select(expected.columns)
    assert kept.equals(expected)


@pytest.mark.parametrize("invalid_byte", [False, True])
def test_every_json_field_is_read_as_text_as_written(tmp_path, invalid_byte):
    """Every key of every line becomes a column, also one that first appears deep in the file;
    numbers keep their value as written (2 stays "2" beside 1.5), objects keep only their own
    fields. The same when an invalid byte means the text read is not the file's bytes."""
    rows = [{"event_id": f"E{i}", "price": 1.5 if i == 0 else 2, "context": {"page": "/"}}
            for i in range(3000)]  # fmt: skip
    rows[1]["context"] = {"page": "/cart", "tags": ["秋"]}
    rows[-1]["late_key"] = True
    body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    assert len(body) > 1 << 17 and b"late_key" not in body[: 1 << 17]
    if invalid_byte:
        body = body.replace(b'"E7"', b'"E\xff7"')
    path = tmp_path / "events.jsonl"
    path.write_bytes(body)
    frame, _, rejects = read_file(path, "jsonl", ("utf-8",))
    assert frame.columns == ["event_id", "price", "context", "late_key"]
    assert frame.schema == dict.fromkeys(frame.columns, pl.String)
    assert frame["price"].to_list()[:3] == ["1.5", "2", "2"]
    assert frame["context"].to_list()[:3] == [
        '{"page": "/"}', '{"page": "/cart", "tags": ["秋"]}', '{"page": "/"}',
    ]  # fmt: skip
    assert frame["late_key"].to_list() == [None] * 2999 + ["true"]
    assert (rejects is not None and rejects.drop_nulls().len() == 1) == invalid_byte


def test_contract_rejects_values_outside_bounds():
    contract = load_contract("support")["tickets"]
    frame = pl.DataFrame({c: ["x"] for c in contract.columns}).with_columns(
        ticket_id=pl.lit("T1"), category=pl.lit("billing"), channel=pl.lit("chat"),
        status=pl.lit("open"), csat=pl.lit("6"), shop_customer_id=pl.lit(None, pl.String),
        created_at=pl.lit(TS), updated_at=pl.lit(TS), resolved_at=pl.lit(None, pl.String),
    )  # fmt: skip
    import duckdb

    from ingestion.contracts import check_sql

    con = duckdb.connect()
    con.register("incoming", frame.with_row_index("_source_row", offset=1))
    (reason,) = con.execute(
        f"select _reject_reason from ({check_sql(contract, 'incoming', frame.columns)})"
    ).fetchone()
    assert reason == "value above 5 in csat: 6"


def test_files_read_ahead_load_in_order_once_and_stop_at_a_file_that_cannot_be_read(
    settings, monkeypatch
):
    """A ContractError that is not about the file's content (a configuration error, such as an
    unknown encoding) stops the source there; unreadable content is quarantined instead
    (tests/faults/test_bad_input.py)."""
    import ingestion.files as files

    for day in (27, 28, 29, 30):
        write_csv(settings.source_dir / "crm" / f"contacts_202610{day}.csv",
                  [GOOD.replace("C1,", f"C{day},")])  # fmt: skip
    real_read = files.read_file

    def read_file(path, *args):
        if path.name == "contacts_20261029.csv":
            raise ContractError(f"{path}: cannot be read")
        return real_read(path, *args)

    monkeypatch.setattr(files, "read_file", read_file)
    with connect(settings.warehouse) as con:
        with pytest.raises(ContractError, match="contacts_20261029.csv: cannot be read"):
            load_dir(con, settings)
        loaded = con.execute("select file_name from raw._files order by loaded_at").fetchall()
        assert loaded == [("crm/contacts_20261027.csv",), ("crm/contacts_20261028.csv",)]
        monkeypatch.undo()
        results = load_dir(con, settings)  # the next run loads the two left, in order
        ids = con.execute("select contact_id from raw.crm_contacts order by _loaded_at").fetchall()
    assert [r.source_location.rsplit("/", 1)[1] for r in results] == [
        "contacts_20261029.csv", "contacts_20261030.csv"
    ]  # fmt: skip
    assert ids == [("C27",), ("C28",), ("C29",), ("C30",)]


def test_a_file_unchanged_since_its_load_is_not_read_again_and_a_changed_one_is(
    settings, monkeypatch
):
    import os

    import ingestion.files as files

    path = settings.source_dir / "crm" / "contacts_20261030.csv"
    write_csv(path, [GOOD])
    hour_ago = path.stat().st_mtime_ns - 3_600 * 10**9
    os.utime(path, ns=(hour_ago, hour_ago))  # exported an hour ago
    hashed = []
    real_sha = files.sha256_of
    monkeypatch.setattr(files, "sha256_of", lambda p: hashed.append(p.name) or real_sha(p))

    def run():
        hashed.clear()
        with connect(settings.warehouse) as con:
            loaded = [r.rows_loaded for r in load_dir(con, settings)]
            versions = con.execute(
                "select file_name, size_bytes, modified_ns from raw._files order by loaded_at"
            ).fetchall()
        return loaded, list(hashed), versions

    assert run() == (
        [1],
        [path.name],
        [("crm/contacts_20261030.csv", path.stat().st_size, hour_ago)],
    )
    # the next run recognises the file by name, size and time: not hashed, not read
    assert run()[:2] == ([], [])
    # touched, same bytes: hashed once, not loaded again, its new time recorded
    os.utime(path, ns=(hour_ago + 10**9, hour_ago + 10**9))
    loaded, hashed_now, versions = run()
    assert (loaded, hashed_now) == ([], [path.name])
    assert versions[0][2] == hour_ago + 10**9
    assert run()[:2] == ([], [])
    # same name and size, new content and time: loaded as a new version
    write_csv(path, [GOOD.replace("C1,", "C9,")])
    os.utime(path, ns=(hour_ago + 2 * 10**9, hour_ago + 2 * 10**9))
    loaded, hashed_now, versions = run()
    assert (loaded, hashed_now, len(versions)) == ([1], [path.name], 2)


def test_a_file_written_just_before_it_was_hashed_is_hashed_again_next_time(settings):
    path = settings.source_dir / "crm" / "contacts_20261030.csv"
    write_csv(path, [GOOD])  # modified now: it may still change within the clock's resolution
    with connect(settings.warehouse) as con:
        (result,) = load_dir(con, settings)
        recorded = con.execute("select modified_ns from raw._files").fetchall()
        write_csv(path, [GOOD.replace("C1,", "C2,")])  # same size, maybe the same time
        (again,) = load_dir(con, settings)
        ids = con.execute("select contact_id from raw.crm_contacts order by _loaded_at").fetchall()
    assert recorded == [(None,)]
    assert (result.rows_loaded, again.rows_loaded) == (1, 1)
    assert ids == [("C1",), ("C2",)]


def test_json_arrays_and_objects_are_kept_as_json_text(tmp_path, caplog):
    """A source that adds a list or an object field (viewed products, page context) loads with
    polars' reader, not line by line: the value is kept as its JSON text."""
    path = tmp_path / "events.jsonl"
    rows = [
        {"event_id": "E1", "product_ids": [3, 5], "context": {"page": "/", "tags": ["秋"]}},
        {"event_id": "E2", "product_ids": [], "context": None},
        {"event_id": "E3", "product_ids": None, "context": {"page": "/cart", "tags": []}},
    ]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    frame, _, rejects = read_file(path, "jsonl", ("utf-8",))
    assert rejects is None and frame.schema == {c: pl.String for c in frame.columns}
    assert [json.loads(v) if v is not None else None for v in frame["product_ids"]] == [
        [3, 5], [], None,
    ]  # fmt: skip
    assert [json.loads(v) if v is not None else None for v in frame["context"]] == [
        {"page": "/", "tags": ["秋"]}, None, {"page": "/cart", "tags": []},
    ]  # fmt: skip
    assert frame["context"][0] == '{"page": "/", "tags": ["秋"]}'
    assert "malformed" not in caplog.text


@pytest.mark.parametrize("duplicate", [False, True])
def test_a_large_batch_is_appended_in_source_order_with_or_without_duplicate_keys(
    settings, duplicate
):
    from ingestion.raw import load_object

    contract = load_contract("web")["events"]
    rows = 900_000  # several of DuckDB's row groups, written by more than one thread
    ids = [f"e{i}" for i in range(rows)]
    if duplicate:
        ids[-1] = "e7"
    frame = pl.DataFrame(
        {
            "event_id": ids,
            "anonymous_id": "a1",
            "event_type": ["page_view"] * (rows - 1) + ["unknown"],
            "occurred_at": TS,
        }
    )
    with connect(settings.warehouse) as con:
        result = load_object(con, contract, frame, "events.jsonl")
        # the table's own order, as a scan reads it
        order = con.execute("select _source_row from raw.web_events").fetchnumpy()["_source_row"]
        (reason,) = con.execute("select reason from raw._quarantine").fetchone()

    assert (result.rows_loaded, result.rows_quarantined) == (rows - 1, 1)
    assert order.tolist() == list(range(1, rows))
    if duplicate:
        assert reason == "unknown value in event_type: unknown; duplicate primary key event_id: e7"
    else:
        assert reason == "unknown value in event_type: unknown"
