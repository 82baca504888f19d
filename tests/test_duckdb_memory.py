"""DuckDB keeps the memory it frees for its next queries (block_allocator_memory), in the
pipeline's own connections and in dbt's, sized by CRM360_DUCKDB_BLOCK_MEMORY."""

from __future__ import annotations

import subprocess

import pytest

from crm360.dbt import dbt_executable
from crm360.settings import duckdb_block_memory
from crm360.warehouse import connect


def _block_memory(con) -> str:
    return con.execute("select current_setting('block_allocator_memory')").fetchone()[0]


def test_the_warehouse_connection_keeps_the_configured_memory(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM360_DUCKDB_BLOCK_MEMORY", "768MiB")
    with connect(tmp_path / "w.duckdb") as con:
        assert _block_memory(con) == "768.0 MiB"
    monkeypatch.setenv("CRM360_DUCKDB_BLOCK_MEMORY", "0MB")
    with connect(tmp_path / "w.duckdb", read_only=True) as con:
        assert _block_memory(con) == "0 bytes"


def test_by_default_at_most_a_quarter_of_the_machine_is_kept(tmp_path, monkeypatch):
    # a quarter of the machine's memory, or of the container's limit when that is lower
    monkeypatch.delenv("CRM360_DUCKDB_BLOCK_MEMORY", raising=False)
    with connect(tmp_path / "w.duckdb") as con:
        kept = _block_memory(con)
    amount, unit = kept.split()
    assert unit in ("GiB", "MiB")
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        total_kib = int(meminfo.readline().split()[1])
    kept_mib = float(amount) * (1024 if unit == "GiB" else 1)
    # DuckDB shows the amount rounded to a tenth of its unit
    assert 0 < kept_mib <= total_kib / 1024 / 4 + 0.05 * 1024


def test_a_value_that_is_not_an_amount_of_memory_is_refused_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM360_DUCKDB_BLOCK_MEMORY", "lots")
    with pytest.raises(ValueError, match=r"CRM360_DUCKDB_BLOCK_MEMORY .* not 'lots'"):
        duckdb_block_memory()
    with pytest.raises(ValueError, match="CRM360_DUCKDB_BLOCK_MEMORY"):
        connect(tmp_path / "w.duckdb")
    assert not (tmp_path / "w.duckdb").exists()


@pytest.mark.slow
def test_dbt_keeps_the_configured_memory(settings, monkeypatch):
    monkeypatch.setenv("CRM360_DUCKDB_BLOCK_MEMORY", "640MiB")
    connect(settings.warehouse).close()  # an empty warehouse, as before the first run
    query = "select current_setting('block_allocator_memory') as kept"
    paths = ["--target-path", str(settings.dbt_target_dir)]
    paths += ["--log-path", str(settings.dbt_target_dir / "logs")]
    shown = subprocess.run(
        [dbt_executable(), "show", "--inline", query, "--output", "json", "--quiet", *paths],
        cwd=settings.dbt_project_dir,
        env=settings.dbt_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert shown.returncode == 0, shown.stdout[-2000:] + shown.stderr[-2000:]
    assert '"kept": "640.0 MiB"' in shown.stdout, shown.stdout[-2000:]
