"""Comparing two benchmark results (bench/compare.py), on result files of real runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import compare, run

RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results"


def test_compare_prints_each_stage_and_ratio_of_two_results(tmp_path, capsys):
    old, new = RESULTS / "20261124T154431Z.json", RESULTS / "20261124T163418Z.json"
    assert compare.main([str(old), str(new)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("20261124T154431Z.json (2026-11-24T15:44:31")
    assert "== 1,000,000 people" in out
    assert "the machines differ" not in "\n".join(out)
    rows = {line.split()[0]: line.split() for line in out if line[:10].strip() in
            [*run.STAGES, "total"]}  # fmt: skip
    assert set(rows) == {*run.STAGES, "total"}
    # total: full 305.6 -> 329.7 (+8%), incremental 131.3 -> 137.4 (+5%), peak
    assert rows["total"][1:] == ["305.6", "->", "329.7", "+8%",
                                 "131.3", "->", "137.4", "+5%", "7,556", "->", "7,061"]  # fmt: skip
    assert "floor 7.5 s -> 9.1 s (+22%)" in "\n".join(out)
    assert "incremental / full: 43% -> 42%" in out
    assert "pandas / ours, core models: 3.33 -> 3.33" in out

    # the two latest files of a folder, oldest first; another machine is named
    folder = tmp_path / "results"
    folder.mkdir()
    record = json.loads(new.read_text(encoding="utf-8"))
    (folder / "20260101T000000Z.json").write_text(json.dumps(record), encoding="utf-8")
    record["machine"] = {**record["machine"], "cores": 8,
                         "versions": {**record["machine"]["versions"], "duckdb": "9.9.9"}}  # fmt: skip
    (folder / "20260102T000000Z.json").write_text(json.dumps(record), encoding="utf-8")
    (folder / "dbt-tasks-20260103T000000Z.json").write_text("{}", encoding="utf-8")
    assert compare.main(["--results-dir", str(folder)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("20260101T000000Z.json")
    assert "the machines differ: cores: 2 -> 8; duckdb: 2.0.0 -> 9.9.9" in out
    assert "total        329.7 -> 329.7   +0%" in out


def test_compare_says_what_it_cannot_compare(tmp_path):
    only_1m, only_10k = RESULTS / "20261124T163418Z.json", RESULTS / "20261124T134641Z.json"
    record = json.loads(only_1m.read_text(encoding="utf-8"))
    record["sizes"] = [s for s in record["sizes"] if s["people"] == 1_000_000]
    one_size = tmp_path / "one_size.json"
    one_size.write_text(json.dumps(record), encoding="utf-8")
    with pytest.raises(SystemExit, match=r"no size in common: \[10000\] against \[1000000\]"):
        compare.main([str(only_10k), str(one_size)])
    (tmp_path / "20260101T000000Z.json").write_text("{}", encoding="utf-8")
    with pytest.raises(SystemExit, match="need two benchmark results in .*, found 1"):
        compare.main(["--results-dir", str(tmp_path)])
    with pytest.raises(SystemExit):
        compare.main([str(only_1m)])  # one file: argparse's error, exit 2
