"""Publishing audience files so that a marketing tool never reads a half-written or unsafe
export.

Layout under the export folder, per audience:

    <audience>/<run>/<destination>.<ext>            everyone in the audience, in that format
    <audience>/<run>/<destination>.added.<ext>      joined since the previous export
    <audience>/<run>/<destination>.removed.<ext>    left since the previous export
    <audience>/<run>/members.parquet                who was exported (the next run's delta base):
                                                    customer id and platform hashes, no contact
                                                    data in plain text
    <audience>/<run>/manifest.json                  run, counts, columns, sha256 per file, ...
    <audience>/latest.json                          pointer to the newest complete run, moved last

Every customer the definition selects goes through the same suppression, whatever the format:
deletion requested, do-not-contact, opted out (no opt-in, or unsubscribed), hard-bounced, no
contact point for the channel, and over a contact cap. Of the rest, a stable hash-based share
is held back as the control group (recorded, never exported). A run folder is written as a
hidden temporary folder and renamed into place in one step; `latest.json` is replaced by rename
after that, so a crash at any point leaves the previous export and pointer exactly as they
were.

Exports only move forward: `latest.json` records the marts' as-of date, and a run built on older
marts than that is refused before anything is written. Every folder and file is checked to
resolve inside the export folder. Removal files name a person by the identifiers needed to
remove them and nothing more.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from activation import hashing
from activation.audiences import Audience, Destination, predicate_sql
from crm360.fileio import sha256_of, sweep_leftovers, write_atomic

if TYPE_CHECKING:
    import duckdb
    import polars as pl

SUPPRESSION_REASONS = (
    "deletion_requested",
    "do_not_contact",
    "opted_out",
    "hard_bounced",
    "no_contact_point",
    "contact_cap",
)
# identifiers kept for every member, so that a later run can write removals in any format
IDENTIFIER_COLUMNS = ("customer_id", "email", "phone_e164")
# what a csv or parquet removal file holds: enough to remove the person, no e-mail, name or value
REMOVAL_COLUMNS = ("customer_id",)
# what members.parquet keeps of each member: the id and what each platform's removal call needs
MEMBER_HASHES = {
    "google_email": ("email", hashing.google_email),
    "google_phone": ("phone_e164", hashing.google_phone),
    "meta_email": ("email", hashing.meta_email),
    "meta_phone": ("phone_e164", hashing.meta_phone),
}
COUNTRY = "JP"
# a platform's file: its column -> the member-record hash it holds, and its country column
PLATFORM_LAYOUTS = {
    "google_customer_match": (
        {"Email": "google_email", "Phone": "google_phone"},
        ("Country", COUNTRY),
    ),
    "meta_custom_audience": (
        {"email": "meta_email", "phone": "meta_phone"},
        ("country", hashing.meta_country(COUNTRY)),
    ),
}
EXTENSIONS = {
    "csv": "csv",
    "parquet": "parquet",
    "google_customer_match": "csv",
    "meta_custom_audience": "csv",
}


class StaleExportError(RuntimeError):
    """The run's marts are older than the export `latest.json` points to. Retrying cannot help."""

    permanent = True


class UnsafeExportPathError(RuntimeError):
    """A folder or file of an export would resolve outside the export folder."""

    permanent = True


def run_folder_name(run_id: str) -> str:
    """A file-system safe folder name for an Airflow run id (which holds ':' and '+')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("_")


def _inside(path: Path, folder: Path, what: str) -> Path:
    """`path`, which must resolve strictly inside `folder` (symbolic links followed)."""
    resolved, root = path.resolve(), folder.resolve()
    if resolved == root or not resolved.is_relative_to(root):
        raise UnsafeExportPathError(
            f"refusing to export: {what} {path} resolves to {resolved}, not inside {root}"
        )
    return path


def _as_date(value) -> date | None:
    """A date from a DuckDB value or an ISO text (None stays None)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def marts_as_of(con: duckdb.DuckDBPyConnection) -> date | None:
    """The as-of date of the marts this connection reads: `marts.customer_360`'s, or
    `marts.audience_base`'s where customer_360 is absent (None when they hold no one)."""
    tables = {
        name
        for (name,) in con.execute(
            "select table_name from information_schema.tables where table_schema = 'marts' "
            "and table_name in ('customer_360', 'audience_base')"
        ).fetchall()
    }
    table = "customer_360" if "customer_360" in tables else "audience_base"
    return _as_date(con.execute(f"select max(as_of_date) from marts.{table}").fetchall()[0][0])


def check_not_older(audience_dir: Path, run_id: str, as_of: date | None) -> None:
    """Refuse a run whose marts are older than those of the export `latest.json` points to, so
    that a late or replayed run never moves the files or the pointer back in time. The same
    as-of date (a retry, a re-run) is allowed."""
    pointer = audience_dir / "latest.json"
    if not pointer.exists():
        return
    latest = json.loads(pointer.read_text(encoding="utf-8"))
    current = _as_date(latest.get("as_of_date"))
    if current is None:  # a pointer written before as-of dates were recorded
        return
    if as_of is None or as_of < current:
        shown = f"are as of {as_of.isoformat()}" if as_of else "have no as-of date"
        raise StaleExportError(
            f"refusing to export {audience_dir.name} for run {run_id!r}: its marts {shown}, "
            f"older than {current.isoformat()} of run {latest.get('run_id')!r}, which {pointer} "
            f"points to"
        )


def _write_json_atomic(path: Path, payload: dict) -> None:
    write_atomic(path, (json.dumps(payload, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def audience_query(audience: Audience) -> str:
    """Every customer the definition selects, with the first suppression reason that applies
    (null when none does). The predicate is SQL generated from its parsed, checked tree."""
    where = predicate_sql(audience.where)
    if audience.channel == "email":
        no_contact_point = "email is null or not coalesce(has_valid_email, false)"
    else:
        no_contact_point = "email is null and phone_e164 is null"
    caps = []
    if audience.max_contacts_7d is not None:
        caps.append(f"send_count_7d >= {int(audience.max_contacts_7d)}")
    if audience.max_contacts_30d is not None:
        caps.append(f"send_count_30d >= {int(audience.max_contacts_30d)}")
    cap = " or ".join(caps) or "false"
    return f"""
        select *,
            case
                when coalesce(is_deletion_requested, true) then 'deletion_requested'
                when coalesce(is_do_not_contact, true) then 'do_not_contact'
                when not coalesce(is_email_opted_in, false)
                    or coalesce(has_unsubscribed, true) then 'opted_out'
                when coalesce(has_hard_bounced, true) then 'hard_bounced'
                when {no_contact_point} then 'no_contact_point'
                when {cap} then 'contact_cap'
            end as suppression_reason,
        from marts.audience_base
        where ({where})
        order by customer_id
    """


def in_control_group(audience_name: str, customer_id: str, percent: float) -> bool:
    """Stable holdout: the same customer is in or out of an audience's control group on every
    run (SHA-256 of '<audience>:<customer_id>', first 8 hex digits, modulo 10,000 basis
    points)."""
    digest = hashlib.sha256(f"{audience_name}:{customer_id}".encode()).hexdigest()
    return int(digest[:8], 16) % 10_000 < round(percent * 100)


def select_members(con: duckdb.DuckDBPyConnection, audience: Audience) -> tuple[pl.DataFrame, dict]:
    """(eligible customers with `is_control`, counts). Suppressed customers are only counted."""
    import polars as pl

    selected = con.sql(audience_query(audience)).pl()
    reasons = selected.get_column("suppression_reason").value_counts()
    suppressed = {reason: 0 for reason in SUPPRESSION_REASONS}
    for reason, count in reasons.iter_rows():
        if reason is not None:
            suppressed[reason] = count
    eligible = selected.filter(pl.col("suppression_reason").is_null())
    control = [
        in_control_group(audience.name, customer_id, audience.control_group_percent)
        for customer_id in eligible.get_column("customer_id").to_list()
    ]
    eligible = eligible.with_columns(pl.Series("is_control", control, dtype=pl.Boolean))
    counts = {
        "selected": selected.height,
        "suppressed": suppressed,
        "suppressed_total": sum(suppressed.values()),
        "control_group": int(sum(control)),
        "exported": eligible.height - int(sum(control)),
    }
    return eligible, counts


def _hashed(frame: pl.DataFrame, columns: dict) -> pl.DataFrame:
    """A frame of `columns` (output name -> (source column, function))."""
    import polars as pl

    return pl.DataFrame({
        name: pl.Series(name, [function(v) for v in frame.get_column(source).to_list()],
                        dtype=pl.String)
        for name, (source, function) in columns.items()
    })  # fmt: skip


def member_record(frame: pl.DataFrame) -> pl.DataFrame:
    """What members.parquet keeps of `frame` (members with their contact columns): the
    customer id and the platforms' hashes of e-mail and phone, never the contact data."""
    import polars as pl

    hashes = _hashed(frame, MEMBER_HASHES) if frame.height else pl.DataFrame(
        schema=dict.fromkeys(MEMBER_HASHES, pl.String))  # fmt: skip
    return pl.concat([frame.select("customer_id"), hashes], how="horizontal")


def render(
    frame: pl.DataFrame, destination: Destination, columns: tuple[str, ...], part: str = "full"
):
    """The rows of one destination's file: the audience's columns, or a platform's layout.
    A `removed` part comes from the previous run's member record (member_record): a csv or
    parquet file holds REMOVAL_COLUMNS only, so whoever left, for instance after asking for
    deletion, is not written out again in plain text; a platform's file holds the hashed
    identifiers its removal call needs."""
    import polars as pl

    if destination.format in ("csv", "parquet"):
        return frame.select(list(REMOVAL_COLUMNS if part == "removed" else columns))
    if destination.format not in PLATFORM_LAYOUTS:
        raise ValueError(f"unknown format {destination.format!r}")
    layout, (country_column, country) = PLATFORM_LAYOUTS[destination.format]
    if part == "removed":  # the previous run's member record already holds the hashes
        out = frame.select([pl.col(record).alias(name) for name, record in layout.items()])
    else:
        out = _hashed(frame, {name: MEMBER_HASHES[record] for name, record in layout.items()})
    return out.with_columns(pl.lit(country).alias(country_column))


def _write(rows: pl.DataFrame, path: Path, destination: Destination) -> dict:
    """Write one file; for CP932, characters the code page lacks become '?' and are counted."""
    info = {"rows": rows.height, "encoding": None, "unencodable_characters": 0}
    if destination.format == "parquet":
        rows.write_parquet(path)
    else:
        text = rows.write_csv()
        info["encoding"] = destination.encoding
        if destination.encoding == "cp932":
            bad = [ch for ch in set(text) if not _encodable(ch, "cp932")]
            info["unencodable_characters"] = sum(text.count(ch) for ch in bad)
            path.write_bytes(text.encode("cp932", errors="replace"))
        else:
            path.write_bytes(text.encode("utf-8"))
    return info


def _encodable(character: str, encoding: str) -> bool:
    try:
        character.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True


def previous_members(audience_dir: Path, run_id: str) -> tuple[str | None, pl.DataFrame | None]:
    """The run id and members of the export this run's deltas are against: the one
    `latest.json` points to, or, when that is this same run (a retry, a manual re-run, a
    duplicate Asset event), the export it was itself compared with, so that a re-run's delta
    files carry the same additions and removals as the first run's (None before the first)."""
    import polars as pl

    pointer = audience_dir / "latest.json"
    if not pointer.exists():
        return None, None
    latest = json.loads(pointer.read_text(encoding="utf-8"))
    folder = _inside(audience_dir / latest["path"], audience_dir, "the previous run folder")
    if latest["run_id"] == run_id:
        manifest = folder / "manifest.json"
        base = json.loads(manifest.read_text(encoding="utf-8")) if manifest.exists() else {}
        previous_run = base.get("delta", {}).get("previous_run_id")
        if previous_run is None:
            return None, None
        folder = _inside(
            audience_dir / run_folder_name(previous_run), audience_dir, "the previous run folder"
        )
        latest = {"run_id": previous_run}
    members = folder / "members.parquet"
    if not members.exists():
        return latest["run_id"], None
    record = pl.read_parquet(members)
    if not set(MEMBER_HASHES) <= set(record.columns):  # written before records held hashes
        for column in ("email", "phone_e164"):
            if column not in record.columns:
                record = record.with_columns(pl.lit(None, pl.String).alias(column))
        record = member_record(record)
    return latest["run_id"], record.select("customer_id", *MEMBER_HASHES)


def publish_audience(
    con: duckdb.DuckDBPyConnection,
    audience: Audience,
    export_dir: Path,
    run_id: str,
    quality: dict,
    as_of: date | None = None,
) -> dict:
    """Select, suppress and split the audience, write every destination's files, the delta
    files and the manifest into a temporary folder, swap it into place, then move `latest`.

    `as_of` is the marts' as-of date (read from `con` when not given). A run older than the
    export `latest.json` points to raises StaleExportError, and a folder or file that would
    resolve outside `export_dir` raises UnsafeExportPathError, both before anything is
    written."""
    import polars as pl

    audience_dir = _inside(export_dir / audience.name, export_dir, "audience folder")
    final = _inside(audience_dir / run_folder_name(run_id), audience_dir, "run folder")
    if final.name.startswith("."):  # hidden names are the temporary and retired folders
        raise UnsafeExportPathError(f"refusing to export: run folder {final.name!r} is hidden")
    _inside(audience_dir / "latest.json", audience_dir, "pointer")
    as_of = _as_date(as_of) if as_of is not None else marts_as_of(con)
    check_not_older(audience_dir, run_id, as_of)

    eligible, counts = select_members(con, audience)
    members = eligible.filter(~pl.col("is_control"))
    keep = list(dict.fromkeys([*IDENTIFIER_COLUMNS, *audience.columns]))
    members = members.select(keep)

    previous_run, previous = previous_members(audience_dir, run_id)
    record = member_record(members)
    if previous is None:
        added, removed = members, record.clear()
    else:
        ids = pl.col("customer_id").cast(pl.String)
        added = members.join(previous.select(ids), on="customer_id", how="anti")
        removed = previous.with_columns(ids).join(
            members.select("customer_id"), on="customer_id", how="anti"
        )

    # folders a killed export left (a full audience each, personal data included)
    sweep_leftovers(audience_dir, r"\.(tmp|old)-.+-(?P<pid>\d+)")
    staging = _inside(audience_dir / f".tmp-{final.name}-{os.getpid()}", audience_dir, "folder")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)

    files = []
    for destination in audience.destinations:
        extension = EXTENSIONS[destination.format]
        for part, frame in (("", members), (".added", added), (".removed", removed)):
            path = _inside(staging / f"{destination.file_stem}{part}.{extension}", staging, "file")
            rows = render(frame, destination, audience.columns, part.lstrip(".") or "full")
            info = _write(rows, path, destination)
            files.append({
                "name": path.name,
                "destination": destination.name,
                "format": destination.format,
                "part": part.lstrip(".") or "full",
                "columns": rows.columns,
                **info,
                "sha256": sha256_of(path),
            })  # fmt: skip
    record.write_parquet(staging / "members.parquet")
    manifest = {
        "audience": audience.name,
        "description": audience.description,
        "owner": audience.owner,
        "channel": audience.channel,
        "where": audience.where,
        "run_id": run_id,
        "as_of_date": as_of.isoformat() if as_of else None,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "row_count": members.height,
        "columns": list(audience.columns),
        "files": files,
        "counts": counts,
        "control_group_percent": audience.control_group_percent,
        "contact_caps": {
            "max_contacts_7d": audience.max_contacts_7d,
            "max_contacts_30d": audience.max_contacts_30d,
        },
        "delta": {
            "previous_run_id": previous_run,
            "added": added.height,
            "removed": removed.height,
        },
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
            "as_of_date": as_of.isoformat() if as_of else None,
            "path": final.name,
            "manifest": f"{final.name}/manifest.json",
            "row_count": members.height,
        },
    )
    return {
        "audience": audience.name,
        "rows": members.height,
        "path": str(final),
        "control_group": counts["control_group"],
        "suppressed": counts["suppressed_total"],
        "added": added.height,
        "removed": removed.height,
        "members": eligible.select("customer_id", "is_control"),
    }


_MEMBERS_DDL = """
create schema if not exists activation;
create table if not exists activation.audience_members (
    run_id varchar not null,
    audience varchar not null,
    customer_id varchar not null,
    is_control boolean not null,
    control_group_percent double not null,
    exported_at timestamptz not null
);
"""


def record_members(
    con: duckdb.DuckDBPyConnection, audience: Audience, run_id: str, members: pl.DataFrame
) -> int:
    """Store who was exported and who was held back (control) for this run and audience, so
    that uplift can be measured later; a re-run of the same run replaces its rows."""
    import polars as pl

    frame = members.with_columns(
        pl.lit(run_id).alias("run_id"),
        pl.lit(audience.name).alias("audience"),
        pl.lit(audience.control_group_percent).alias("control_group_percent"),
    )
    con.execute(_MEMBERS_DDL)
    con.execute("begin")
    con.execute(
        "delete from activation.audience_members where run_id = ? and audience = ?",
        [run_id, audience.name],
    )
    con.register("new_members", frame.to_arrow())
    con.execute(
        """
        insert into activation.audience_members
        select run_id, audience, customer_id, is_control, control_group_percent, now()
        from new_members
        """
    )
    con.unregister("new_members")
    con.execute("commit")
    return frame.height
