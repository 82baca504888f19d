"""Bad input a source can send: each test builds its small data, loads it through ingestion and
checks that the bad part is quarantined with a reason, the rest loads, and the counts reconcile
(rows read = rows loaded + rows quarantined)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import polars as pl
import pytest

from crm360.settings import PROJECT_ROOT
from crm360.warehouse import connect
from ingestion.contracts import contract_sources, load_contract
from ingestion.files import load_files, read_file
from ingestion.raw import load_object

STAGING = PROJECT_ROOT / "dbt_project" / "models" / "staging"
_CAST = re.compile(r"cast\(\s*(\w+)\s+as\s+(\w+(?:\(\s*\d+\s*,\s*\d+\s*\))?)\s*\)", re.IGNORECASE)

HEADER = "contact_id,last_name,first_name,email,email_opt_in,do_not_contact,created_at,updated_at"
TS = "2024-01-01T10:00:00+09:00"
CONTACTS = load_contract("crm")["contacts"]
WEB_EVENTS = load_contract("web")["events"]
ORDER_ITEMS = load_contract("shop")["order_items"]


def contact(
    contact_id: str, last_name: str = "佐藤", email: str = "a@x.com", first_name: str = "花子"
) -> str:
    return f"{contact_id},{last_name},{first_name},{email},true,false,{TS},{TS}"


def write(path: Path, body: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    return path


def csv_bytes(lines: list[str], encoding: str = "utf-8") -> bytes:
    return ("\n".join([HEADER, *lines]) + "\n").encode(encoding)


def staging_casts(source: str) -> dict[str, set[str]]:
    """The types the staging models of `source` cast each raw column to."""
    casts: dict[str, set[str]] = {}
    for model in (STAGING / source).glob("*.sql"):
        for column, cast_type in _CAST.findall(model.read_text("utf-8")):
            casts.setdefault(column, set()).add(re.sub(r"\s+", "", cast_type.lower()))
    return casts


def audit(con) -> list[tuple]:
    return con.execute(
        "select source_location, rows_read, rows_loaded, rows_quarantined from raw._loads "
        "order by started_at"
    ).fetchall()


def quarantine(con) -> list[tuple]:
    return con.execute(
        "select source_row, reason, record from raw._quarantine order by quarantined_at, source_row"
    ).fetchall()


# --- contracts and staging agree ------------------------------------------------------------


def order_items(**columns: list[str]) -> pl.DataFrame:
    rows = len(next(iter(columns.values())))
    base = {
        "order_item_id": [str(i + 1) for i in range(rows)],
        "order_id": ["10"] * rows,
        "product_id": ["20"] * rows,
        "quantity": ["1"] * rows,
        "unit_price": ["100"] * rows,
        "updated_at": [TS] * rows,
    }
    return pl.DataFrame(base | columns)


def test_a_number_staging_cannot_cast_is_quarantined_not_loaded(settings):
    """Fault: the contract checked integers as bigint, decimals as decimal(18, 4) and let
    '12.5' through an integer check (DuckDB rounds it), while staging casts quantity to
    integer and money to decimal(18, 2): a row the contract let in failed every staging build
    (or loaded 13 for 12.5). Every value the contract lets in now casts in staging."""
    frame = order_items(
        quantity=["1", "2147483648", "12.5", "2", "1", "3", "12.0"],
        unit_price=[
            "9223372036854775807", "100", "100", "9999999999999999.99", "10000000000000000",
            "1e20", "5",
        ],
    )  # fmt: skip
    with connect(settings.warehouse) as con:
        result = load_object(con, ORDER_ITEMS, frame, "test://order_items")
        reasons = dict(con.execute("select source_row, reason from raw._quarantine").fetchall())
        # what stg_shop__order_items does with the rows that were loaded
        casts = staging_casts("shop")
        staged = con.execute(
            f"select order_item_id, cast(quantity as {casts['quantity'].pop()}), "
            f"cast(unit_price as {casts['unit_price'].pop()}) from raw.shop_order_items "
            "order by _source_row"
        ).fetchall()

    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (7, 2, 5)
    assert reasons == {
        1: "out of range in unit_price (decimal(18, 2) holds less than 10^16 in absolute "
        "value): 9223372036854775807",
        2: "out of range in quantity (integer holds -2147483648 to 2147483647): 2147483648",
        3: "not a whole number in quantity: 12.5",
        5: "out of range in unit_price (decimal(18, 2) holds less than 10^16 in absolute "
        "value): 10000000000000000",
        6: "out of range in unit_price (decimal(18, 2) holds less than 10^16 in absolute "
        "value): 1e20",
    }
    assert [(row[0], row[1]) for row in staged] == [("4", 2), ("7", 12)]
    assert str(staged[0][2]) == "9999999999999999.99"  # the largest staging holds still loads


def test_integers_are_whole_numbers_written_as_digits():
    contract = load_contract("social")["mentions"]
    values = ["5", " 4 ", "+3", "2.0", "2.5", "1e0", "0x1", "five", "NaN"]
    frame = pl.DataFrame(
        {
            "mention_id": [f"M{i}" for i in range(len(values))],
            "platform": "x",
            "handle": "@h",
            "rating": values,
            "posted_at": TS,
        }
    )
    import duckdb

    from ingestion.contracts import check_sql

    con = duckdb.connect()
    con.register("incoming", frame.with_row_index("_source_row", offset=1))
    reasons = [
        reason
        for (reason,) in con.execute(
            f"select _reject_reason from ({check_sql(contract, 'incoming', frame.columns)}) "
            "order by _source_row"
        ).fetchall()
    ]
    assert reasons == [
        None, None, None, None,
        "not a whole number in rating: 2.5",
        "unparsable integer in rating: 1e0",
        "unparsable integer in rating: 0x1",
        "unparsable integer in rating: five",
        "unparsable integer in rating: NaN",
    ]  # fmt: skip


@pytest.mark.parametrize("source", contract_sources())
def test_every_numeric_contract_column_is_checked_as_its_staging_cast(source):
    """The contract's type is the type staging casts to: integer (32-bit), bigint, and
    decimal, which staging holds as decimal(18, 2) (a narrower decimal needs bounds that fit)."""
    casts = staging_casts(source)
    for contract in load_contract(source).values():
        for column in contract.columns.values():
            staged = casts.get(column.name, set())
            if column.type in ("integer", "bigint"):
                assert staged <= {column.type}, (contract.name, column.name, staged)
            elif column.type == "decimal":
                for cast_type in staged:
                    precision, scale = map(int, re.findall(r"\d+", cast_type))
                    limit = 10 ** (precision - scale)
                    bounded = column.max is not None and column.min is not None
                    assert (precision, scale) == (18, 2) or (
                        bounded and -limit < column.min and column.max < limit
                    ), (contract.name, column.name, cast_type)
            else:
                assert not any(t.startswith(("int", "bigint", "decimal")) for t in staged), (
                    contract.name,
                    column.name,
                    staged,
                )


# --- a file that cannot be read does not block its source -----------------------------------


def load_contacts(con, settings, contract=CONTACTS, pattern="crm/contacts_*.csv"):
    return load_files(con, contract, settings.source_dir, pattern, as_of=None)


@pytest.mark.parametrize(
    "bad_line, where",
    [
        (contact("C2", email="hidden@example.com") + ",extra,fields", "line 3: 10 fields"),
        ('C2,"hidden@example.com,true,false', "line 3: unexpected end of data"),
    ],
    ids=["ragged", "unclosed-quote"],
)
def test_a_csv_that_cannot_be_parsed_is_quarantined_whole_and_the_next_file_loads(
    settings, bad_line, where
):
    """Fault: a ragged or badly quoted CSV made read_file raise, so the source failed on every
    run until a person removed the file; polars' message also carried the next row."""
    crm = settings.source_dir / "crm"
    write(crm / "contacts_20261029.csv", csv_bytes([contact("C1"), bad_line, contact("C3")]))
    write(crm / "contacts_20261030.csv", csv_bytes([contact("C4")]))
    with connect(settings.warehouse) as con:
        results = load_contacts(con, settings)
        rerun = load_contacts(con, settings)
        loaded = con.execute("select contact_id from raw.crm_contacts").fetchall()
        (row, reason, record), *more = quarantine(con)
        recorded = con.execute("select file_name from raw._files order by 1").fetchall()
        loads = audit(con)

    assert [(r.rows_read, r.rows_loaded, r.rows_quarantined) for r in results] == [
        (1, 0, 1),
        (1, 1, 0),
    ]
    assert rerun == []  # recorded as loaded: not read again until its content changes
    assert loaded == [("C4",)]
    assert (row, json.loads(record), more) == (0, {"file": "crm/contacts_20261029.csv"}, [])
    assert "contacts_20261029.csv: cannot be read as CSV: " + where in reason
    assert "hidden" not in reason and "example.com" not in reason
    assert recorded == [("crm/contacts_20261029.csv",), ("crm/contacts_20261030.csv",)]
    assert all(read == done + bad for _, read, done, bad in loads)


def test_a_quarantined_file_is_read_again_once_its_content_changes(settings):
    path = write(
        settings.source_dir / "crm" / "contacts_20261029.csv",
        csv_bytes([contact("C1") + ",extra"]),
    )
    with connect(settings.warehouse) as con:
        (first,) = load_contacts(con, settings)
        path.write_bytes(csv_bytes([contact("C1")]))
        (fixed,) = load_contacts(con, settings)
    assert (first.rows_quarantined, fixed.rows_loaded) == (1, 1)


def test_a_corrupt_parquet_file_is_quarantined_whole(settings):
    contract = dataclasses.replace(CONTACTS, format="parquet")
    crm = settings.source_dir / "crm"
    crm.mkdir(parents=True)
    good = pl.read_csv(csv_bytes([contact("C2")]), infer_schema=False)
    good.write_parquet(crm / "contacts_20261030.parquet")
    write(crm / "contacts_20261029.parquet", b"PAR1 not really parquet PAR1")
    with connect(settings.warehouse) as con:
        results = load_contacts(con, settings, contract, "crm/contacts_*.parquet")
        ((row, reason, record),) = quarantine(con)
        loaded = con.execute("select contact_id from raw.crm_contacts").fetchall()
    assert [(r.rows_read, r.rows_loaded, r.rows_quarantined) for r in results] == [
        (1, 0, 1),
        (1, 1, 0),
    ]
    assert row == 0 and json.loads(record) == {"file": "crm/contacts_20261029.parquet"}
    assert "contacts_20261029.parquet: cannot be read as Parquet: " in reason
    assert loaded == [("C2",)]


def test_a_file_that_cannot_be_opened_is_quarantined_and_tried_again_next_run(
    settings, monkeypatch
):
    import ingestion.files as files

    crm = settings.source_dir / "crm"
    write(crm / "contacts_20261029.csv", csv_bytes([contact("C1")]))
    write(crm / "contacts_20261030.csv", csv_bytes([contact("C2")]))
    real_hash = files.sha256_of

    def sha256_of(path):
        if path.name == "contacts_20261029.csv":
            raise PermissionError(13, "Permission denied", str(path))
        return real_hash(path)

    monkeypatch.setattr(files, "sha256_of", sha256_of)
    with connect(settings.warehouse) as con:
        first = load_contacts(con, settings)
        ((_, reason, _),) = quarantine(con)
        monkeypatch.undo()
        (second,) = load_contacts(con, settings)  # readable now: loaded
        ids = con.execute("select contact_id from raw.crm_contacts order by 1").fetchall()
    assert [(r.rows_loaded, r.rows_quarantined) for r in first] == [(0, 1), (1, 0)]
    assert reason.endswith("contacts_20261029.csv: cannot be opened: Permission denied")
    assert (second.rows_loaded, ids) == (1, [("C1",), ("C2",)])


# --- byte order marks ------------------------------------------------------------------------


def test_a_json_lines_file_with_a_byte_order_mark_keeps_its_first_event(settings):
    """Fault: the UTF-8 BOM made the first line malformed JSON, so the file's first event
    was quarantined instead of loaded."""
    events = [
        {"event_id": f"E{i}", "anonymous_id": "a", "event_type": "login", "occurred_at": TS}
        for i in (1, 2)
    ]
    body = "".join(json.dumps(e) + "\n" for e in events).encode()
    write(settings.source_dir / "web" / "events" / "date=2026-10-30" / "events.jsonl",
          b"\xef\xbb\xbf" + body)  # fmt: skip
    with connect(settings.warehouse) as con:
        (result,) = load_files(
            con, WEB_EVENTS, settings.source_dir, "web/events/date=*/events.jsonl", None
        )
        ids = con.execute("select event_id from raw.web_events order by 1").fetchall()
    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (2, 2, 0)
    assert ids == [("E1",), ("E2",)]


@pytest.mark.parametrize("encoding", ["utf-8", "cp932"])
def test_a_csv_with_a_byte_order_mark_reads_its_first_column_by_name(tmp_path, encoding):
    """Also when the rest of the file is CP932 (a BOM read as CP932 would be text)."""
    path = write(tmp_path / "contacts.csv", b"\xef\xbb\xbf" + csv_bytes([contact("C1")], encoding))
    frame, read_as, _ = read_file(path, "csv", ("utf-8", "cp932"))
    assert (frame.columns[0], frame["contact_id"][0], read_as) == ("contact_id", "C1", encoding)
    assert frame["last_name"][0] == "佐藤"


# --- a UTF-8 row in a CP932 file -------------------------------------------------------------


def test_a_utf8_row_in_a_cp932_file_is_quarantined_as_written_not_loaded_as_mojibake(
    settings, caplog
):
    """Fault: decoding is chosen per file, so a UTF-8 row appended to a CP932 export loaded
    as mojibake (田中 as 逕ｰ荳ｭ) without a warning."""
    utf8_row = contact("C2", last_name="田中", first_name="Hanako").encode("utf-8")
    assert utf8_row.decode("cp932") != utf8_row.decode("utf-8")  # decodes, wrongly, as CP932
    body = csv_bytes([contact("C1"), contact("C3", last_name="渡辺")], "cp932") + utf8_row + b"\n"
    write(settings.source_dir / "crm" / "contacts_20261030.csv", body)
    with connect(settings.warehouse) as con:
        (result,) = load_contacts(con, settings)
        loaded = con.execute("select contact_id, last_name from raw.crm_contacts order by 1")
        loaded = loaded.fetchall()
        ((row, reason, record),) = quarantine(con)
    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (3, 2, 1)
    assert loaded == [("C1", "佐藤"), ("C3", "渡辺")]
    assert (row, reason) == (3, "row looks UTF-8 in a cp932 file")
    assert json.loads(record)["last_name"] == "田中"  # kept as the writer meant it
    assert "contacts_20261030.csv: 1 row(s) look UTF-8 in a cp932 file" in caplog.text


def test_a_cp932_file_without_utf8_rows_loads_every_row(tmp_path):
    names = ["佐藤", "渡辺", "髙橋", "ｻﾄｳ", "東京都"]
    body = csv_bytes([contact(f"C{i}", last_name=n) for i, n in enumerate(names)], "cp932")
    frame, encoding, rejects = read_file(write(tmp_path / "a.csv", body), "csv", ("utf-8", "cp932"))
    assert (encoding, rejects, frame["last_name"].to_list()) == ("cp932", None, names)


def test_a_load_that_fails_on_a_full_disk_says_so(tmp_path):
    """A disk full during a load raised "cannot rollback - no transaction is active", hiding
    the cause: the cause is raised, the failed rollback only logged."""
    import duckdb
    import polars as pl

    from crm360.warehouse import connect
    from ingestion.contracts import load_contract
    from ingestion.raw import load_object

    class FullDisk:
        """A connection whose disk fills up at the quarantine insert, which ends the
        transaction the way a real I/O error does."""

        def __init__(self, con):
            self.con = con

        def execute(self, sql, *args):
            if sql.startswith("insert into raw._quarantine"):
                self.con.execute("rollback")
                raise duckdb.IOException("could not write file: No space left on device")
            return self.con.execute(sql, *args)

        def __getattr__(self, name):
            return getattr(self.con, name)

    contract = load_contract("spend")["monthly"]
    frame = pl.DataFrame({"month_start": ["2026-10-01"], "channel": ["email"], "spend_jpy": ["1"]})
    with connect(tmp_path / "w.duckdb") as con:
        with pytest.raises(duckdb.IOException, match="No space left on device"):
            load_object(FullDisk(con), contract, frame, "spend.csv")
        assert con.execute("select count(*) from raw._loads").fetchone() == (0,)
