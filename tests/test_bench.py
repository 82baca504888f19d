"""A tiny run of the benchmark code, so that `make bench` cannot rot between benchmark runs."""

from __future__ import annotations

import json

import pytest

from bench import run

pytestmark = pytest.mark.slow


def test_benchmark_runs_every_stage_and_records_its_figures(tmp_path, capsys):
    assert run.main(["--sizes", "300", "--work-dir", str(tmp_path / "work"),
                     "--cache-dir", str(tmp_path / "cache"),
                     "--results-dir", str(tmp_path / "results")]) == 0  # fmt: skip
    [path] = (tmp_path / "results").glob("*.json")
    record = json.loads(path.read_text(encoding="utf-8"))
    assert record["machine"]["cores"] >= 1
    assert record["machine"]["versions"]["duckdb"]
    [size] = record["sizes"]
    assert size["people"] == 300
    for day in ("full", "incremental"):
        assert set(size[day]["stages"]) == set(run.STAGES)
        for stage in size[day]["stages"].values():
            assert stage["seconds"] > 0
            assert stage["peak_rss_mib"] > 50  # a Python process with DuckDB loaded
        # where each dbt build's time went: node seconds by kind, the slowest nodes first
        for stage in ("staging", "marts"):
            dbt = size[day]["stages"][stage]["dbt"]
            assert dbt["node_counts"]["model"] > 0 and dbt["node_seconds"]["model"] > 0
            slowest = [node["seconds"] for node in dbt["slowest"]]
            assert len(slowest) == 10 and slowest == sorted(slowest, reverse=True)
        assert size[day]["stages"]["marts"]["dbt"]["node_counts"]["test"] > 0
        # each source's share of the ingest: its rows add up to the day's source rows
        sources = size[day]["stages"]["ingest"]["sources"]
        assert {"crm", "shop", "web", "email"} <= set(sources)
        assert sum(s["rows"] for s in sources.values()) == size[day]["source_rows"]
        assert all(s["seconds"] > 0 for s in sources.values())
        # and identity's phases, within the stage's time
        phases = size[day]["stages"]["identity"]["phase_seconds"]
        assert {"records", "deterministic", "clustering", "ids", "write"} <= set(phases)
        assert 0 < sum(phases.values()) < size[day]["stages"]["identity"]["seconds"]
    # the core models alone: dbt run, models only, the two core marts among them
    core = size["core_marts"]["dbt"]
    assert set(core["node_counts"]) == {"model"}
    assert (
        core["node_counts"]["model"]
        < size["full"]["stages"]["marts"]["dbt"]["node_counts"]["model"]
    )
    # the incremental day loads only the new day's rows
    assert 0 < size["incremental"]["source_rows"] < size["full"]["source_rows"]
    # the floor scans what the full run loads, give or take the bad rows it skips
    assert size["floor"]["rows"] >= size["full"]["source_rows"] * 0.98
    for name in ("pipeline_over_floor", "incremental_over_full", "pandas_over_ours_from_files"):
        assert size["ratios"][name] > 0
    out = capsys.readouterr().out
    assert "pipeline / floor" in out and "incremental day / full run" in out
    assert "dbt incremental marts: model x" in out and "dbt core models: model x" in out
    assert "full ingest by source: " in out and "incremental ingest by source: " in out
    assert "incremental identity by phase: records " in out


@pytest.mark.parametrize(
    ("args", "sizes"),
    [([], "10000,100000,1000000"), (["SIZES=10000,100000"], "10000,100000")],
)
def test_make_bench_runs_the_sizes_it_documents(args, sizes):
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    dry_run = subprocess.run(
        ["make", "-n", "bench", *args], cwd=root, capture_output=True, text=True, check=True
    )
    assert f"-m bench.run --sizes {sizes}\n" in dry_run.stdout
