"""Opening the DuckDB warehouse the same way everywhere, and publishing its read-only copy.

DuckDB allows one writing process per file, and a writer locks readers of other processes out.
So analysts read a published copy: after a successful run the warehouse is checkpointed and
copied next to the copy, then renamed over it in one step. A reader that has the old copy open
goes on reading the old state; the next connection sees the new one; nobody sees a mix.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from crm360.fileio import sweep_leftovers
from crm360.settings import duckdb_block_memory

if TYPE_CHECKING:
    import duckdb


def connect(path: Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the warehouse; the parent folder is created for a new, writable warehouse."""
    import duckdb

    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    block_memory = duckdb_block_memory()  # a bad setting fails before the file is opened
    _release_in_process_dbt()
    con = duckdb.connect(str(path), read_only=read_only)
    con.execute("set TimeZone = 'UTC'")
    con.execute("set block_allocator_memory = $1", [block_memory])
    return con


@contextmanager
def registered(con: duckdb.DuckDBPyConnection, name: str, frame) -> Iterator[None]:
    """`frame` (pandas, polars or Arrow) queryable as `name` on `con` inside the block."""
    con.register(name, frame)
    try:
        yield
    finally:
        con.unregister(name)


def _release_in_process_dbt() -> None:
    """Close the DuckDB database dbt-duckdb keeps open after a dbt run in this process.

    dbt runs in the task's process when the DAG renders one task per dbt node (cosmos's dbt
    runner); under `airflow dags test` every task shares that process, and DuckDB refuses a
    second connection to the same file with another configuration (read-only here). dbt
    reopens its database on its next run."""
    module = sys.modules.get("dbt.adapters.duckdb.connections")
    if module is None:
        return
    manager = module.DuckDBConnectionManager
    environment = manager._ENV
    if environment is not None:
        manager.close_all_connections()
        environment.close()


def compact(warehouse: Path) -> None:
    """Rewrite the warehouse into a new file holding only its live data, and swap it in.

    DuckDB reuses the pages an update or a replaced table frees, but does not clear them: after
    an erasure their old values would stay in the file until overwritten. Call with no other
    connection open (the writer's slot held)."""
    import duckdb

    with connect(warehouse) as con:
        con.execute("checkpoint")
    sweep_leftovers(warehouse.parent, rf"\.{re.escape(warehouse.name)}\.(?P<pid>\d+)\.compact")
    staging = warehouse.with_name(f".{warehouse.name}.{os.getpid()}.compact")
    staging.unlink(missing_ok=True)
    try:
        con = duckdb.connect()
        try:
            con.execute("set block_allocator_memory = $1", [duckdb_block_memory()])
            con.execute("attach $path as src (read_only)", {"path": str(warehouse)})
            con.execute("attach $path as dst", {"path": str(staging)})
            con.execute("copy from database src to dst")
            con.execute("detach dst")
        finally:
            con.close()
        os.chmod(staging, 0o600)
        os.replace(staging, warehouse)
    finally:
        staging.unlink(missing_ok=True)


def publish_read_only_copy(warehouse: Path, published: Path, write=None) -> Path:
    """Checkpoint the warehouse and swap a copy of it in at `published` atomically.
    `write(source, target)` writes the copy (a byte-for-byte copy by default)."""
    with connect(warehouse) as con:
        con.execute("checkpoint")
    published.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # a copy left by a publish that was killed: a whole warehouse of personal data
    sweep_leftovers(published.parent, rf"\.{re.escape(published.name)}\.(?P<pid>\d+)\.tmp")
    staging = published.with_name(f".{published.name}.{os.getpid()}.tmp")
    try:
        if write is None:
            # owner only from its first byte, whatever the umask: the copy holds personal data
            os.close(os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
            os.chmod(staging, 0o600)  # a leftover of an interrupted publish keeps its old mode
            shutil.copyfile(warehouse, staging)
        else:
            staging.unlink(missing_ok=True)
            write(warehouse, staging)
            os.chmod(staging, 0o600)
        with connect(staging, read_only=True) as con:  # a copy that does not open is not published
            con.execute("select count(*) from information_schema.tables").fetchone()
        os.replace(staging, published)
    finally:
        staging.unlink(missing_ok=True)
    return published
