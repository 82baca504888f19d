"""A throwaway PostgreSQL server on 127.0.0.1 from the machine's own binaries, for the tests
that read a source database from PostgreSQL (skipped where the binaries are not installed)."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(candidates[-1]) if candidates else None


def _as_postgres_user(cmd: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextmanager
def postgres_server() -> Iterator[str]:
    """A new server for the block; yields its URL (postgresql://postgres@127.0.0.1:PORT/postgres)."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL server binaries are not installed on this machine")
    root = Path(tempfile.mkdtemp(prefix="crm360-pg-"))
    os.chmod(root, 0o777)
    data = root / "data"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    subprocess.run(_as_postgres_user([initdb, "-D", str(data), "--auth=trust", "-U", "postgres"]),
                   check=True, capture_output=True)  # fmt: skip
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
    subprocess.run(
        _as_postgres_user([pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"]),
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_postgres_user([pg_ctl, "-D", str(data), "-m", "fast", "stop"]), capture_output=True
        )
        shutil.rmtree(root, ignore_errors=True)


def copy_table(sqlite_path: Path, table: str, url: str, ddl: str) -> None:
    """Copy one SQLite table into a new PostgreSQL table with the given column definitions."""
    import psycopg

    with sqlite3.connect(sqlite_path) as source, psycopg.connect(url) as target:
        target.execute(f'create table "{table}" ({ddl})')
        rows = source.execute(f'select * from "{table}"').fetchall()
        if rows:
            marks = ", ".join(["%s"] * len(rows[0]))
            with target.cursor() as cursor:
                cursor.executemany(f'insert into "{table}" values ({marks})', rows)


def copy_to_postgres(sqlite_path: Path, url: str) -> None:
    import psycopg

    with sqlite3.connect(sqlite_path) as source, psycopg.connect(url) as target:
        for (table,) in source.execute("select name from sqlite_master where type = 'table'"):
            columns = [row[1] for row in source.execute(f"pragma table_info({table})")]
            types = {c: "timestamptz" if c.endswith("_at") else "text" for c in columns}
            types.update({c: "bigint" for c in columns if c.endswith("_id") and c != "contact_id"})
            ddl = ", ".join(f'"{c}" {types[c]}' for c in columns)
            target.execute(f'create table "{table}" ({ddl})')
            rows = source.execute(f"select * from {table}").fetchall()
            marks = ", ".join(["%s"] * len(columns))
            with target.cursor() as cursor:
                # the row whose created_at is not a date stays text in SQLite; PostgreSQL would
                # reject it, as a real database would never have held it
                good = [r for r in rows if "2026-02-30" not in str(r)]
                cursor.executemany(f'insert into "{table}" values ({marks})', good)
