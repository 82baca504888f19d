"""A killed publish or export leaves a full copy of personal data behind; the next one sweeps
what dead processes left, and never what a live one is writing."""

from __future__ import annotations

import subprocess
import sys

from crm360.fileio import sweep_leftovers
from crm360.warehouse import connect, publish_read_only_copy


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_killed_publish_leaves_no_warehouse_copy_behind(tmp_path):
    warehouse = tmp_path / "crm360.duckdb"
    with connect(warehouse) as con:
        con.execute("create table people as select 'taro@example.com' as email")
    published = tmp_path / "published" / "crm360.duckdb"
    published.parent.mkdir()
    dead = published.with_name(f".crm360.duckdb.{_dead_pid()}.tmp")
    dead.write_bytes(warehouse.read_bytes())
    live = published.with_name(".crm360.duckdb.1.tmp")  # process 1 is alive
    live.write_bytes(b"being written")

    publish_read_only_copy(warehouse, published)

    assert sorted(p.name for p in published.parent.iterdir()) == [live.name, "crm360.duckdb"]


def test_a_killed_exports_folders_are_swept(tmp_path):
    audience = tmp_path / "dormant"
    dead = _dead_pid()
    for name in (f".tmp-run2-{dead}", f".old-run1-{dead}", ".tmp-run3-1", "run1"):
        (audience / name).mkdir(parents=True)
        (audience / name / "esp.csv").write_text("customer_id,email\ncus_a,taro@example.com\n")

    removed = sweep_leftovers(audience, r"\.(tmp|old)-.+-(?P<pid>\d+)")

    assert sorted(p.name for p in removed) == [f".old-run1-{dead}", f".tmp-run2-{dead}"]
    assert sorted(p.name for p in audience.iterdir()) == [".tmp-run3-1", "run1"]
