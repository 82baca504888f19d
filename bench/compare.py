"""Compare two benchmark results: each stage's time and peak memory, and the ratios, per size.

    python -m bench.compare                    # the two latest files in bench/results
    python -m bench.compare OLD.json NEW.json  # two given files
    make bench-compare

Sizes present in both files are compared. The floor (one DuckDB scan per source) does the same
work in every run, so its change hints at how the machine's own speed moved between the two
runs (a short disk scan, it does not catch all of it). A difference in cores, memory or
library versions is printed first.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.run import BENCH, STAGES

DAYS = ("full", "incremental")
RATIOS = {
    "pipeline_over_floor": "pipeline / floor",
    "incremental_over_full": "incremental / full",
    "pandas_over_ours_core_models": "pandas / ours, core models",
    "pandas_over_ours_from_files": "pandas / ours, from the files",
}


def latest_two(results_dir: Path) -> list[Path]:
    """The two newest result files (their names are UTC timestamps), oldest first."""
    files = sorted(results_dir.glob("[0-9]*T*Z.json"))
    if len(files) < 2:
        raise SystemExit(f"need two benchmark results in {results_dir}, found {len(files)}")
    return files[-2:]


def _change(old: float, new: float) -> str:
    if not old:
        return ""
    return f"{(new - old) / old:+.0%}"


def _figures(result: dict, day: str, stage: str | None) -> dict:
    """One day's figures of a size: a stage's, or the day's total when stage is None."""
    return result[day] if stage is None else result[day]["stages"][stage]


def _seconds(old: float, new: float) -> str:
    return f"{old:>8.1f} ->{new:>6.1f}{_change(old, new):>6}"


def machine_differences(old: dict, new: dict) -> list[str]:
    """What differs between the two runs' machines: cores, memory, Python, library versions."""
    lines = []
    for key in ("cores", "memory_gib", "python"):
        if old.get(key) != new.get(key):
            lines.append(f"{key}: {old.get(key)} -> {new.get(key)}")
    old_versions, new_versions = old.get("versions", {}), new.get("versions", {})
    for package in sorted(set(old_versions) | set(new_versions)):
        if old_versions.get(package) != new_versions.get(package):
            lines.append(f"{package}: {old_versions.get(package)} -> {new_versions.get(package)}")
    return lines


def compare_size(old: dict, new: dict) -> list[str]:
    """The comparison of one size, as printed lines."""
    lines = [f"== {new['people']:,} people"]
    if old["full"]["source_rows"] != new["full"]["source_rows"]:
        lines.append(
            f"the data differ: {old['full']['source_rows']:,} -> "
            f"{new['full']['source_rows']:,} source rows in the full run"
        )
    lines.append(f"{'stage':<10}{'full s':>23}{'incr s':>23}{'full peak MiB':>20}")
    for stage in [*STAGES, None]:
        before = {day: _figures(old, day, stage) for day in DAYS}
        after = {day: _figures(new, day, stage) for day in DAYS}
        seconds = "".join(_seconds(before[day]["seconds"], after[day]["seconds"]) for day in DAYS)
        peaks = f"{before['full']['peak_rss_mib']:>10,.0f} ->{after['full']['peak_rss_mib']:>7,.0f}"
        lines.append(f"{stage or 'total':<10}{seconds}{peaks}")
    floor_old, floor_new = old["floor"]["seconds"], new["floor"]["seconds"]
    lines.append(
        f"floor {floor_old:.1f} s -> {floor_new:.1f} s ({_change(floor_old, floor_new)}): "
        "the same work in both runs, a hint of how the machine's own speed moved"
    )
    for key, label in RATIOS.items():
        before, after = old["ratios"].get(key), new["ratios"].get(key)
        if before is None or after is None:
            continue
        percent = key == "incremental_over_full"
        shown = [f"{v:.0%}" if percent else f"{v:.2f}" for v in (before, after)]
        lines.append(f"{label}: {shown[0]} -> {shown[1]}")
    return lines


def compare(old: dict, new: dict) -> list[str]:
    """The whole comparison of two result files, as printed lines."""
    lines = []
    differences = machine_differences(old["machine"], new["machine"])
    if differences:
        lines.append("the machines differ: " + "; ".join(differences))
    old_sizes = {size["people"]: size for size in old["sizes"]}
    common = [size for size in new["sizes"] if size["people"] in old_sizes]
    if not common:
        raise SystemExit(
            f"no size in common: {sorted(old_sizes)} against "
            f"{[size['people'] for size in new['sizes']]}"
        )
    for size in common:
        lines.extend(compare_size(old_sizes[size["people"]], size))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, help="OLD.json NEW.json")
    parser.add_argument("--results-dir", type=Path, default=BENCH / "results")
    args = parser.parse_args(argv)
    if len(args.files) not in (0, 2):
        parser.error("give two result files, or none for the two latest")
    old_path, new_path = args.files or latest_two(args.results_dir)
    old, new = (json.loads(path.read_text(encoding="utf-8")) for path in (old_path, new_path))
    print(f"{old_path.name} ({old['started_at']}) -> {new_path.name} ({new['started_at']})")
    print("\n".join(compare(old, new)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
