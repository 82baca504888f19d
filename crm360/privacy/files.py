"""Scrubbing erased people out of the files the pipeline wrote before their erasure.

- exports: every earlier run folder of every audience loses the erased customers' rows (by
  customer id, or by the platform hash of their e-mail or phone), and its manifest's counts
  and checksums are updated. `members.parquet` keeps them as id and hashes only: the next
  export's removal files need them, so that the marketing tools drop them too.
- text files (Data Docs pages, validation results, task and run logs): each erased e-mail,
  phone and full name, as written, JSON-escaped or HTML-escaped, becomes `[erased]`.
"""

from __future__ import annotations

import html
import io
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from crm360.fileio import sha256_of, write_atomic
from crm360.privacy.columns import is_identifier

log = logging.getLogger(__name__)

ERASED = "[erased]"
# files that hold text the pipeline wrote: logs, Data Docs, validation results, run reports
TEXT_SUFFIXES = frozenset({".log", ".json", ".html", ".txt", ".md", ".csv", ".yml"})


def _forms(values: Iterable[str]) -> list[bytes]:
    forms: set[str] = set()
    for value in values:
        forms.update({value, json.dumps(value)[1:-1], html.escape(value)})
        if "@" in value:
            forms.add(html.escape(value).replace("@", "&#64;"))
    return sorted((f.encode("utf-8") for f in forms if len(f) >= 2), key=len, reverse=True)


def _rewrite(path: Path, data: bytes) -> None:
    """A log is rewritten in place: a task may still be appending to it (a new file would
    take its later lines away). Any other file is replaced in one step, its mode kept."""
    if path.suffix == ".log":
        with path.open("r+b") as handle:
            handle.write(data)
            handle.truncate()
        return
    mode = path.stat().st_mode & 0o777
    write_atomic(path, data)
    os.chmod(path, mode)


def scrub_text_files(folders: Iterable[Path], values: Iterable[str]) -> int:
    """Replace every form of `values` in the text files under `folders`; how many files
    changed. A file is rewritten in one step with its mode kept."""
    forms = _forms(values)
    if not forms:
        return 0
    changed = 0
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in folder.rglob("*"):
            if path.suffix not in TEXT_SUFFIXES or not path.is_file() or path.is_symlink():
                continue
            data = path.read_bytes()
            scrubbed = data
            for form in forms:
                scrubbed = scrubbed.replace(form, ERASED.encode())
            if scrubbed != data:
                _rewrite(path, scrubbed)
                changed += 1
    return changed


def _platform_hashes(values: Iterable[str]) -> set[str]:
    from activation import hashing

    hashes = set()
    for value in values:
        for function in (hashing.google_email, hashing.meta_email) if "@" in value else (
            hashing.google_phone, hashing.meta_phone
        ):  # fmt: skip
            digest = function(value)
            if digest:
                hashes.add(digest)
    return hashes


def _read(path: Path, entry: dict):
    import polars as pl

    if entry["format"] == "parquet":
        return pl.read_parquet(path)
    text = path.read_bytes().decode(entry.get("encoding") or "utf-8")
    return pl.read_csv(io.StringIO(text), infer_schema=False) if text else pl.DataFrame()


def _scrub_file(path: Path, entry: dict, customer_ids: list[str], hashes: list[str]) -> int:
    """Drop the erased people's rows from one export file; how many went."""
    import polars as pl

    frame = _read(path, entry)
    keep = pl.lit(True)
    if "customer_id" in frame.columns:
        keep = keep & ~pl.col("customer_id").cast(pl.String).is_in(customer_ids)
    for column in frame.columns:
        if column.lower() in ("email", "phone"):  # a platform's hashed identifiers
            keep = keep & ~pl.col(column).is_in(hashes).fill_null(False)
    kept = frame.filter(keep)
    if kept.height == frame.height:
        return 0
    if entry["format"] == "parquet":
        kept.write_parquet(path)
    else:
        encoding = entry.get("encoding") or "utf-8"
        write_atomic(path, kept.write_csv().encode(encoding, errors="replace"))
    entry["rows"] = kept.height
    entry["sha256"] = sha256_of(path)
    return frame.height - kept.height


def scrub_exports(export_dir: Path, customer_ids: set[str], values: Iterable[str]) -> int:
    """Remove erased customers from every earlier export's files; how many rows went."""
    identifiers = [v for v in values if is_identifier(v)]
    hashes = sorted(_platform_hashes(identifiers))
    removed = 0
    for manifest_path in sorted(export_dir.glob("*/*/manifest.json")):
        folder = manifest_path.parent
        if folder.name.startswith("."):
            continue
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        touched = 0
        for entry in manifest.get("files", []):
            path = folder / entry["name"]
            if entry.get("part") == "removed" or not path.is_file():
                continue  # removal files: ids and hashes, needed by the marketing tools
            gone = _scrub_file(path, entry, sorted(customer_ids), hashes)
            if gone and entry.get("part") == "full":
                manifest["row_count"] = entry["rows"]
            touched += gone
        if touched:
            manifest["erased_rows"] = manifest.get("erased_rows", 0) + touched
            write_atomic(manifest_path, json.dumps(manifest, ensure_ascii=False, indent=2).encode())
            removed += touched
    if removed:
        log.info("erasure: %d row(s) removed from earlier exports", removed)
    return removed
