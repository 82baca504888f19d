"""File sources: discover export files, read them as text columns, load each content once.

Used by every source that arrives as files (CRM CSV exports, web event partitions, e-mail
events, social mentions, marketing spend). Reading is polars' native CSV / NDJSON / Parquet
reader; the encoding of a CSV is the first of the contract's encodings that decodes it with the
fewest errors, and a row holding bytes invalid in that encoding is quarantined, not dropped.
A leading UTF-8 byte order mark is not data: it is dropped before the file is decoded.

A row that is valid UTF-8 (with characters beyond ASCII) in a file read as another encoding, a
UTF-8 line appended to a CP932 export, would load as mojibake: it is quarantined ("row looks
UTF-8 in a cp932 file") with its values as UTF-8 reads them, so nothing is lost and nothing is
loaded on a guess. CP932 text that is also valid UTF-8 is rare (a value of only half-width
katakana may be), which is why such a row is set apart for a person, not re-decoded.

A file that cannot be read at all (ragged or badly quoted CSV, corrupt Parquet, a file that
cannot be opened) does not stop its source: it is quarantined whole (raw.quarantine_file) with
a reason naming the file and, for CSV, the line, never the row's contents. A file whose content
was hashed is recorded as loaded, so it is not read again until its content changes; one that
could not even be opened is tried again on the next run.

Why polars and not DuckDB's readers, measured on the 100k-person demo (2 cores), every column
read as text: CSV, 441,870 e-mail events in 68 files, polars 0.15 s, DuckDB read_csv 2.37 s
(DuckDB sniffs each file). JSON lines, 1.93M web events in 29 files, polars 4.9 s, DuckDB
read_json 10.3 s when it detects the keys of every row; DuckDB is faster (1.4 s) only with a
fixed column list, which would silently drop a column the source adds.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from crm360.fileio import sha256_of
from ingestion.contracts import ContractError, ObjectContract
from ingestion.mapping import ObjectMapping
from ingestion.raw import LoadResult, StateUpdate, ensure_raw_schema, load_object, quarantine_file
from ingestion.readahead import read_ahead

if TYPE_CHECKING:
    import duckdb
    import polars as pl

log = logging.getLogger(__name__)

_DATE_IN_PATH = re.compile(r"(20\d{2})-?([01]\d)-?([0-3]\d)")
_REPLACEMENT = "\ufffd"
_BOM = b"\xef\xbb\xbf"


class UnreadableFileError(ContractError):
    """A file whose content cannot be read at all: it is quarantined whole and the source's
    next file still loads. The message names the file (and the line) but no data."""


@dataclass(frozen=True)
class SourceFile:
    path: Path
    name: str  # relative to the source folder, as recorded in raw._files
    file_date: date | None


def file_date(relative: str) -> date | None:
    match = _DATE_IN_PATH.search(relative)
    if not match:
        return None
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return None


def discover(source_dir: Path, pattern: str, as_of: date | None) -> list[SourceFile]:
    """Files matching the pattern, oldest first; dated files only when dated before as_of."""
    base = Path(pattern).parent if Path(pattern).is_absolute() else source_dir
    glob = Path(pattern).name if Path(pattern).is_absolute() else pattern
    found = []
    for path in sorted(base.glob(glob)):
        if not path.is_file():
            continue
        relative = path.relative_to(base).as_posix()
        dated = file_date(relative)
        if as_of is None or dated is None or dated < as_of:
            found.append(SourceFile(path, relative, dated))
    return sorted(found, key=lambda f: (f.file_date or date.min, f.name))


def decode(data: bytes, encodings: tuple[str, ...], where: str) -> tuple[str, str]:
    """Decode with the first encoding that decodes cleanly, else the one with fewest errors."""
    best: tuple[int, str, str] | None = None
    for encoding in encodings:
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError:
            text = data.decode(encoding, errors="replace")
            errors = text.count(_REPLACEMENT)
            if best is None or errors < best[0]:
                best = (errors, encoding, text)
        except LookupError as exc:
            raise ContractError(f"{where}: unknown encoding {encoding!r} in the contract") from exc
    assert best is not None
    log.warning("%s: %d invalid byte sequence(s) for %s", where, best[0], best[1])
    return best[2], best[1]


def _json_text(value: object) -> str:
    """A nested JSON value (polars hands a list over as a Series) as JSON text."""
    import polars as pl

    if isinstance(value, pl.Series):
        value = value.to_list()
    return json.dumps(value, ensure_ascii=False)


def _as_text(frame: pl.DataFrame) -> pl.DataFrame:
    import polars as pl

    casts = []
    for name, dtype in frame.schema.items():
        if dtype == pl.String:
            continue
        if isinstance(dtype, pl.List | pl.Struct | pl.Array):
            casts.append(pl.col(name).map_elements(_json_text, return_dtype=pl.String))
        else:
            casts.append(pl.col(name).cast(pl.String))
    return frame.with_columns(casts) if casts else frame


def read_file(
    path: Path, fmt: str, encodings: tuple[str, ...], delimiter: str = ","
) -> tuple[pl.DataFrame, str, pl.Series | None]:
    """Read one file as text columns; return (frame, encoding, per-row rejection reasons).
    An empty file (no bytes, or only white space) is a batch of no rows. UnreadableFileError
    when the content cannot be read as `fmt` at all."""
    import polars as pl

    if fmt == "parquet":
        return _read_parquet(path), "binary", None
    data = path.read_bytes()
    has_bom = data.startswith(_BOM)
    if has_bom:
        data = data[len(_BOM) :]
    if not data.strip():
        return pl.DataFrame(), encodings[0], None
    text, encoding = decode(data, encodings, str(path))
    # UTF-8 that decoded without a replacement character encodes back to the same bytes
    unchanged = encoding == "utf-8" and _REPLACEMENT not in text
    utf8 = data if unchanged else text.encode("utf-8")
    utf8_lines = encoding != "utf-8" and _has_utf8_line(data)
    del data
    if fmt == "csv":
        frame = _read_csv(utf8, path, delimiter, text)
    elif fmt == "jsonl":
        frame = _read_jsonl(text, utf8, path, data_is_file=unchanged and not has_bom)
    else:
        raise ContractError(f"{path}: unsupported file format {fmt!r}")
    rejects = None
    if _REPLACEMENT in text:
        bad = pl.any_horizontal(
            [
                pl.col(c).str.contains(_REPLACEMENT, literal=True).fill_null(False)
                for c in frame.columns
            ]
        )
        rejects = frame.select(
            pl.when(bad).then(pl.lit(f"invalid {encoding} byte sequence")).otherwise(None)
        ).to_series()
    if utf8_lines:
        frame, utf8_rejects = _utf8_rows(frame, encoding)
        if utf8_rejects is not None:
            count = utf8_rejects.count()
            log.warning("%s: %d row(s) look UTF-8 in a %s file", path, count, encoding)
            rejects = utf8_rejects if rejects is None else rejects.fill_null(utf8_rejects)
    return frame, encoding, rejects


def _has_utf8_line(data: bytes) -> bool:
    """Whether a line of `data` holds bytes beyond ASCII that are valid UTF-8 (cheap: only a
    file where this is true is checked row by row)."""
    for line in data.split(b"\n"):
        if line.isascii():
            continue
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            continue
        return True
    return False


def _as_utf8(value: str, encoding: str) -> str | None:
    """`value`, decoded from `encoding`, as UTF-8 reads its bytes; None when they are not UTF-8."""
    try:
        return value.encode(encoding).decode("utf-8")
    except UnicodeError:
        return None


def _utf8_rows(frame: pl.DataFrame, encoding: str) -> tuple[pl.DataFrame, pl.Series | None]:
    """(frame, reasons) for the rows of a file decoded as `encoding` whose every value beyond
    ASCII is valid UTF-8 once encoded back: such a row was written in UTF-8. Its values are
    given as UTF-8 reads them (what the writer meant), and its reason names the mix-up; None
    when no row is such."""
    import polars as pl

    columns = [c for c, dtype in frame.schema.items() if dtype == pl.String]
    looks_utf8: list[bool | None] = [None] * frame.height  # None: ASCII only
    readings: dict[str, dict[int, str]] = {}
    for name in columns:
        for index, value in enumerate(frame[name].to_list()):
            if value is None or value.isascii() or looks_utf8[index] is False:
                continue
            reading = _as_utf8(value, encoding)
            looks_utf8[index] = reading is not None
            if reading is not None:
                readings.setdefault(name, {})[index] = reading
    flagged = {index for index, looks in enumerate(looks_utf8) if looks}
    if not flagged:
        return frame, None
    repaired = []
    for name, by_row in readings.items():
        values = frame[name].to_list()
        for index in flagged & by_row.keys():
            values[index] = by_row[index]
        repaired.append(pl.Series(name, values, dtype=pl.String))
    reason = f"row looks UTF-8 in a {encoding} file"
    rejects = pl.Series(
        "reason", [reason if i in flagged else None for i in range(frame.height)], pl.String
    )
    return frame.with_columns(repaired), rejects


def _without_values(message: str) -> str:
    """The first line of a reader's error message, without the values it quotes (polars puts
    the text it failed on, often a whole row, between backticks): data may be personal."""
    message = re.sub(r"`[^`]*`", "…", message, flags=re.DOTALL).strip()
    return message.splitlines()[0][:200] if message else ""


def _csv_problem_line(text: str, delimiter: str) -> str | None:
    """Where Python's CSV reader first finds `text` malformed ("line 3: 5 fields where the
    header has 4"), without the row's contents; None when it finds nothing wrong."""
    import csv
    import io

    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    start = 1  # the line the record being read starts on
    try:
        header = next(reader, [])
        start = reader.line_num + 1
        for row in reader:
            if len(row) > len(header):
                return f"line {start}: {len(row)} fields where the header has {len(header)}"
            start = reader.line_num + 1
    except csv.Error as exc:
        return f"line {start}: {exc}"
    return None


def _read_csv(data: bytes, path: Path, delimiter: str, text: str | None = None) -> pl.DataFrame:
    """Every column as text; a file polars cannot parse as CSV is an UnreadableFileError naming
    it and, found in `text` (the file as decoded), the line where it goes wrong."""
    import polars as pl

    try:
        return pl.read_csv(data, infer_schema=False, separator=delimiter)
    except pl.exceptions.PolarsError as exc:
        problem = _without_values(str(exc)) or type(exc).__name__
        line = _csv_problem_line(text if text is not None else data.decode(), delimiter)
        where = f"{line} ({problem})" if line else problem
        raise UnreadableFileError(f"{path}: cannot be read as CSV: {where}") from exc


def _read_parquet(path: Path) -> pl.DataFrame:
    """A Parquet file's columns as text; a corrupt file is an UnreadableFileError naming it."""
    import polars as pl

    try:
        return _as_text(pl.read_parquet(path))
    except pl.exceptions.PolarsError as exc:
        problem = _without_values(str(exc)) or type(exc).__name__
        raise UnreadableFileError(f"{path}: cannot be read as Parquet: {problem}") from exc


def json_value_as_text(value: object) -> str | None:
    """A JSON value as the text raw tables hold: strings as is, booleans lower-case."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _read_jsonl(text: str, data: bytes, path: Path, data_is_file: bool = False) -> pl.DataFrame:
    """NDJSON with polars (`data` is `text` in UTF-8; `data_is_file`: the bytes of the file at
    `path`), every field as text (_ndjson_as_text); a malformed line is kept as a row whose
    fields are all NULL except `_malformed_json`, so it reaches quarantine with its line number
    instead of failing the file.

    polars reads a file whole or fails on its first bad line. A file with bad lines is split
    into lines, and the lines that may not hold a JSON object are set apart: first those not
    framed by braces (a cut-off line), then, if polars still fails, those that are not JSON.
    polars reads the others in one go, as it reads a clean file, and Python's json module
    parses the lines set apart, to keep the valid ones among them and to name what is wrong
    with the others."""
    import polars as pl

    try:
        return _ndjson_as_text(data, _ndjson_file_keys(path) if data_is_file else None)
    except Exception:  # noqa: BLE001 - some lines are malformed: set them apart
        log.warning("%s: malformed JSON lines; quarantining them, reading the others", path)
    lines = (
        pl.DataFrame({"line": text.split("\n")}, schema={"line": pl.String})
        .filter(pl.col("line").str.strip_chars() != "")
        .with_row_index("_position")
    )
    stripped = pl.col("line").str.strip_chars()
    for maybe_object in (
        stripped.str.starts_with("{") & stripped.str.ends_with("}"),
        # null for text that is not JSON
        stripped.str.starts_with("{") & pl.col("line").str.json_path_match("$").is_not_null(),
    ):
        split = lines.with_columns(maybe_object=maybe_object)
        objects = split.filter("maybe_object")
        try:
            body = objects["line"].str.join("\n").item().encode()
            frame = _ndjson_as_text(body, _ndjson_line_keys(objects["line"]))
        except Exception:  # noqa: BLE001 - a bad line among them: set apart more
            continue
        if frame.height == objects.height:
            rest = split.filter(~pl.col("maybe_object"))
            return (
                pl.concat(
                    [
                        frame.with_columns(objects["_position"]),
                        _read_jsonl_lines(rest["line"]).with_columns(rest["_position"]),
                    ],
                    how="diagonal",
                )
                .sort("_position")
                .drop("_position")
            )
    return _read_jsonl_lines(lines["line"])


def _ndjson_file_keys(path: Path) -> list[str] | None:
    """The distinct keys of the objects on the lines of the NDJSON file at `path`, listed by
    DuckDB; None when DuckDB cannot parse them (polars then finds the fields itself)."""
    return _distinct_keys("select json from read_ndjson_objects(?)", [str(path)])


def _ndjson_line_keys(lines: pl.Series) -> list[str] | None:
    """_ndjson_file_keys of lines already in memory."""
    return _distinct_keys("select line as json from lines", [], lines.to_frame("line"))


def _distinct_keys(query: str, parameters: list, lines=None) -> list[str] | None:
    import duckdb

    try:
        with duckdb.connect() as con:
            if lines is not None:
                con.register("lines", lines)
            rows = con.execute(
                f"select distinct unnest(json_keys(json)) from ({query})", parameters
            ).fetchall()
    except duckdb.Error:
        return None
    return [key for (key,) in rows]


def _ndjson_as_text(data: bytes, keys: list[str] | None) -> pl.DataFrame:
    """Every field of the NDJSON `data` as text: strings as they are, numbers as their value
    (2 as "2", 2.50 as "2.5"), booleans as true / false, lists and objects as JSON text.

    polars is told that every field is text: left to infer a type for every field of every line
    first, it took 1.1 s instead of 0.3 s on a 182 MB web log file. The fields are `keys` (all
    the lines' keys, which DuckDB lists in a fraction of that), in the order polars meets them
    in the first lines, then the later ones by name; None: polars finds them itself."""
    import polars as pl

    if keys is None:  # polars lists them as it meets them
        ordered = pl.read_ndjson(data, infer_schema_length=None).columns
    else:
        head = data[: data.rfind(b"\n", 0, 1 << 16) + 1] or data
        try:
            first = pl.read_ndjson(head, infer_schema_length=None).columns
        except Exception:  # noqa: BLE001 - a bad line among the first: by name
            first = []
        first = [k for k in first if k in keys]
        ordered = first + sorted(set(keys) - set(first))
    return pl.read_ndjson(data, schema=dict.fromkeys(ordered, pl.String))


def _read_jsonl_lines(lines: pl.Series) -> pl.DataFrame:
    """Non-blank NDJSON lines parsed one by one: a line that is not a JSON object becomes a
    row holding only `_malformed_json`, the reason with the line's start."""
    import polars as pl

    rows = []
    for line in lines:
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            rows.append({"_malformed_json": f"{exc.msg} at column {exc.colno}: {line[:200]}"})
            continue
        if isinstance(value, dict):
            rows.append({k: json_value_as_text(v) for k, v in value.items()})
        else:
            rows.append({"_malformed_json": f"not a JSON object: {line[:200]}"})
    return pl.DataFrame(rows, infer_schema_length=None).cast(pl.String)


# a file whose modification time is this close to the moment it was hashed may still be being
# written within the same clock tick: its stat is not recorded, so the next run hashes it again
_RACY_NS = 2_000_000_000


@dataclass(frozen=True)
class FileOptions:
    """How an object's files are read and mapped (from the sources config)."""

    encodings: tuple[str, ...] | None = None
    delimiter: str = ","
    mapping: ObjectMapping | None = None


@dataclass(frozen=True)
class _Seen:
    """What raw._files says was loaded: (name, sha256) pairs, and the (name, size, mtime) of
    files whose content was hashed long enough after their last change to be trusted."""

    contents: set
    stats: set


def _stat_key(source_file: SourceFile) -> tuple[str, int, int]:
    stat = source_file.path.stat()
    return source_file.name, stat.st_size, stat.st_mtime_ns


def _read_new(source_file: SourceFile, seen: _Seen, contract: ObjectContract, options: FileOptions):
    """(sha256, size, modification time to record, read_file's result). The result is None when
    the file was loaded before: same name, size and modification time (not hashed again, like
    git's index; sha256 None), or same name and content; an UnreadableFileError when it cannot
    be read (sha256 None when it could not even be opened: nothing to record). The time is None
    when the file changed too close to its hashing to be trusted next time."""
    import time

    try:
        name, size, modified_ns = _stat_key(source_file)
        if (name, size, modified_ns) in seen.stats:
            return None, size, modified_ns, None
        hashed_at = time.time_ns()
        digest = sha256_of(source_file.path)
    except OSError as exc:
        return None, 0, None, _not_opened(source_file, exc)
    trusted_ns = modified_ns if modified_ns < hashed_at - _RACY_NS else None
    if (name, digest) in seen.contents:
        return digest, size, trusted_ns, None
    encodings = options.encodings or contract.encodings
    try:
        read = read_file(source_file.path, contract.format, encodings, options.delimiter)
    except UnreadableFileError as exc:
        return digest, size, trusted_ns, exc
    except OSError as exc:
        return None, size, None, _not_opened(source_file, exc)
    return digest, size, trusted_ns, read


def _not_opened(source_file: SourceFile, exc: OSError) -> UnreadableFileError:
    return UnreadableFileError(f"{source_file.path}: cannot be opened: {exc.strerror or exc}")


def _file_recorded(
    contract: ObjectContract,
    source_file: SourceFile,
    digest: str,
    size: int,
    encoding: str | None,
    modified_ns: int | None,
) -> StateUpdate:
    """The raw._files row saying this content of the file was loaded."""
    return StateUpdate(
        "insert into raw._files (source, object, file_name, sha256, size_bytes, "
        "encoding, load_id, loaded_at, modified_ns) "
        "values (?, ?, ?, ?, ?, ?, ?, current_timestamp, ?)",
        (contract.source, contract.name, source_file.name, digest, size, encoding, ...,
         modified_ns),
    )  # fmt: skip


def load_files(
    con: duckdb.DuckDBPyConnection,
    contract: ObjectContract,
    source_dir: Path,
    pattern: str,
    as_of: date | None,
    run_id: str | None = None,
    options: FileOptions | None = None,
) -> list[LoadResult]:
    """Load every matching file not loaded before with the same content.

    A file is hashed only when its name, size or modification time differs from every file
    loaded before; a file touched without a change in content is recognised by its hash and
    its new time recorded."""
    import polars as pl

    options = options or FileOptions()
    ensure_raw_schema(con)
    rows = con.execute(
        "select file_name, sha256, size_bytes, modified_ns from raw._files "
        "where source = ? and object = ?",
        [contract.source, contract.name],
    ).fetchall()
    seen = _Seen(
        contents={(name, digest) for name, digest, _, _ in rows},
        stats={(name, size, mtime) for name, _, size, mtime in rows if mtime is not None},
    )
    results = []
    # the next file is hashed and read while this one is appended
    for source_file, (digest, size, modified_ns, read) in read_ahead(
        discover(source_dir, pattern, as_of), lambda f: _read_new(f, seen, contract, options)
    ):
        if read is None:  # loaded before with the same content
            if digest is not None and modified_ns is not None:  # touched: record its new time
                con.execute(
                    "update raw._files set size_bytes = ?, modified_ns = ? "
                    "where source = ? and object = ? and file_name = ? and sha256 = ?",
                    [size, modified_ns, contract.source, contract.name, source_file.name, digest],
                )
            continue
        if isinstance(read, UnreadableFileError):  # quarantined whole; the next file loads
            state = [] if digest is None else [
                _file_recorded(contract, source_file, digest, size, None, modified_ns)
            ]  # fmt: skip
            results.append(
                quarantine_file(
                    con, contract, str(source_file.path), source_file.name, str(read), run_id, state
                )
            )
            continue
        frame, encoding, rejects = read
        if "_malformed_json" in frame.columns:
            malformed = frame["_malformed_json"]
            reason = pl.when(malformed.is_not_null()).then(pl.lit("malformed JSON: ") + malformed)
            rejects = frame.select(
                reason.otherwise(rejects if rejects is not None else None)
            ).to_series()
            frame = frame.drop("_malformed_json")
        state = [_file_recorded(contract, source_file, digest, size, encoding, modified_ns)]
        results.append(
            load_object(
                con, contract, frame, str(source_file.path), run_id, state, rejects, options.mapping
            )
        )
    return results


def load_source_files(
    source: str,
    con: duckdb.DuckDBPyConnection,
    source_dir: Path,
    as_of: datetime,
    run_id: str | None = None,
) -> list[LoadResult]:
    """Load every configured object of a file-based source from the files its configuration
    names; an object the configuration leaves out is not loaded (its raw table stays empty)."""
    from ingestion.config import source_config
    from ingestion.contracts import load_contract

    config = source_config(source)
    if config is None or not config.enabled:
        return []
    results = []
    for name, contract in load_contract(source).items():
        obj = config.objects.get(name)
        if obj is None or not obj.enabled or not obj.files:
            continue
        options = FileOptions(obj.encodings, obj.delimiter, ObjectMapping.of(config, obj))
        results += load_files(con, contract, source_dir, obj.files, as_of.date(), run_id, options)
    return results
