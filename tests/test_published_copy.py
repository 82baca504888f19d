"""Analysts read a published copy: while runs publish new states, a reader in another process
sees either the old or the new state, never a mix, and never an error."""

from __future__ import annotations

import json
import subprocess
import sys

from crm360.warehouse import connect, publish_read_only_copy

READER = """
import duckdb, json, sys, time
path, seconds = sys.argv[1], float(sys.argv[2])
seen, errors, end = [], [], time.time() + seconds
while time.time() < end:
    try:
        con = duckdb.connect(path, read_only=True)
        a = con.execute("select count(*), max(version) from marts.a").fetchone()
        b = con.execute("select count(*), max(version) from marts.b").fetchone()
        con.close()
        seen.append([a[0], a[1], b[0], b[1]])
    except Exception as exc:
        errors.append(str(exc))
print(json.dumps({"seen": seen, "errors": errors}))
"""


def write_state(con, version: int) -> None:
    con.execute("create schema if not exists marts")
    con.execute(
        f"create or replace table marts.a as select {version} as version, i from range({version * 1000}) r(i)"
    )
    con.execute(
        f"create or replace table marts.b as select {version} as version, i from range({version * 10}) r(i)"
    )


def test_reader_sees_old_or_new_state_never_a_mix(tmp_path):
    warehouse, published = tmp_path / "w.duckdb", tmp_path / "published" / "w.duckdb"
    with connect(warehouse) as con:
        write_state(con, 1)
    publish_read_only_copy(warehouse, published)

    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(published), "4"], stdout=subprocess.PIPE, text=True
    )
    for version in range(2, 40):
        with connect(warehouse) as con:  # the writer holds the working file meanwhile
            write_state(con, version)
        publish_read_only_copy(warehouse, published)
    out, _ = reader.communicate(timeout=60)
    result = json.loads(out)

    assert result["errors"] == []
    assert len(result["seen"]) > 20
    for a_rows, a_version, b_rows, b_version in result["seen"]:
        assert a_version == b_version  # both tables from the same run
        assert (a_rows, b_rows) == (a_version * 1000, b_version * 10)
    assert len({row[1] for row in result["seen"]}) > 1  # it did read across swaps


def test_failed_copy_is_never_published(tmp_path, monkeypatch):
    warehouse, published = tmp_path / "w.duckdb", tmp_path / "published" / "w.duckdb"
    with connect(warehouse) as con:
        write_state(con, 1)
    publish_read_only_copy(warehouse, published)
    before = published.read_bytes()

    import crm360.warehouse as module

    def truncated_copy(src, dst):
        with open(dst, "wb") as handle:
            handle.write(b"not a database")

    monkeypatch.setattr(module.shutil, "copyfile", truncated_copy)
    with connect(warehouse) as con:
        write_state(con, 2)
    try:
        publish_read_only_copy(warehouse, published)
    except Exception:  # noqa: BLE001 - duckdb raises its own error type for a corrupt file
        pass
    else:
        raise AssertionError("a corrupt copy was published")
    assert published.read_bytes() == before
    assert [p.name for p in published.parent.iterdir()] == [published.name]  # no leftovers
