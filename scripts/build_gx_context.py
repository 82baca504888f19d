"""(Re)create the committed Great Expectations file context under expectations/.

Suites live as JSON under expectations/expectations/ and are edited by hand; this script only
(re)creates the pandas datasource, one dataframe asset per validated table, one validation
definition and one checkpoint per suite. Run it after adding a suite:

    .venv/bin/python scripts/build_gx_context.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import great_expectations as gx

ROOT = Path(__file__).resolve().parents[1] / "expectations"


def main() -> int:
    context = gx.get_context(mode="file", context_root_dir=str(ROOT))
    datasource = context.data_sources.add_or_update_pandas(name="warehouse")
    for suite_file in sorted((ROOT / "expectations").glob("*.json")):
        spec = json.loads(suite_file.read_text(encoding="utf-8"))
        name = spec["name"]
        table = spec["meta"].get("table") or f"derived_{spec['meta']['derived']}"
        suite = context.suites.get(name)
        try:
            asset = datasource.get_asset(table)
        except LookupError:
            asset = datasource.add_dataframe_asset(name=table)
        try:
            batch = asset.get_batch_definition("whole_table")
        except KeyError:
            batch = asset.add_batch_definition_whole_dataframe("whole_table")
        validation = context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=name, data=batch, suite=suite)
        )
        context.checkpoints.add_or_update(
            gx.Checkpoint(
                name=name,
                validation_definitions=[validation],
                # no action: the gate builds Data Docs once, after every checkpoint has run
                actions=[],
                # counts, percentages and up to 20 sample values of what failed; not SUMMARY,
                # whose row indices are positions in a frame that exists only during the run,
                # and which GX finds by filtering the whole frame again for every expectation
                result_format={"result_format": "BASIC"},
            )
        )
        print(f"checkpoint {name}: table {table}, {len(suite.expectations)} expectations")
    return 0


if __name__ == "__main__":
    sys.exit(main())
