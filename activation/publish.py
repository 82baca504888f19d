"""Publishing audience files so that a reader never sees a half-written export.

Layout under the export folder, per audience:

    <audience>/<run>/<audience>.csv      the audience
    <audience>/<run>/manifest.json       what it is: run, counts, columns, sha256, quality
    <audience>/latest.json               pointer to the newest complete run, moved last

A run folder is written as a hidden temporary folder and renamed into place in one step, and
`latest.json` is replaced by rename after that; a crash at any point leaves the previous
export and pointer exactly as they were.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from activation.audiences import Audience
from crm360.fileio import sha256_of, write_atomic

if TYPE_CHECKING:
    import duckdb


def run_folder_name(run_id: str) -> str:
    """A file-system safe folder name for an Airflow run id (which holds ':' and '+')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("_")


def _write_json_atomic(path: Path, payload: dict) -> None:
    write_atomic(path, (json.dumps(payload, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def audience_query(audience: Audience) -> str:
    columns = ", ".join(audience.columns)
    return (
        f"select {columns} from marts.customer_360 "
        f"where ({audience.where}) and {audience.suppression} order by customer_id"
    )


def publish_audience(
    con: duckdb.DuckDBPyConnection,
    audience: Audience,
    export_dir: Path,
    run_id: str,
    quality: dict,
) -> dict:
    """Select the audience, write its files and manifest, then move `latest` to this run."""
    frame = con.sql(audience_query(audience)).pl()
    audience_dir = export_dir / audience.name
    final = audience_dir / run_folder_name(run_id)
    staging = audience_dir / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)

    files = []
    if "csv" in audience.formats:
        csv_path = staging / f"{audience.name}.csv"
        frame.write_csv(csv_path)
        files.append(
            {
                "name": csv_path.name,
                "format": "csv",
                "encoding": "utf-8",
                "rows": frame.height,
                "sha256": sha256_of(csv_path),
            }
        )
    manifest = {
        "audience": audience.name,
        "description": audience.description,
        "owner": audience.owner,
        "channel": audience.channel,
        "run_id": run_id,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "row_count": frame.height,
        "columns": list(frame.columns),
        "files": files,
        "quality": quality,
        "definition_sha256": audience.definition_sha256,
    }
    _write_json_atomic(staging / "manifest.json", manifest)

    # Swap the run folder into place; a re-run of the same run replaces its own folder only.
    if final.exists():
        retired = audience_dir / f".old-{final.name}-{os.getpid()}"
        os.replace(final, retired)
        os.replace(staging, final)
        shutil.rmtree(retired)
    else:
        os.replace(staging, final)
    _write_json_atomic(
        audience_dir / "latest.json",
        {
            "run_id": run_id,
            "path": final.name,
            "manifest": f"{final.name}/manifest.json",
            "row_count": frame.height,
        },
    )
    return {"audience": audience.name, "rows": frame.height, "path": str(final)}
