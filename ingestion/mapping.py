"""From a source's own shape to its contract's: column names, value codes, dates, time zones,
money. Applied to every batch before the contract check, so the check and the quarantine speak
in the contract's terms.

What a company configures per source object (`config/sources.yml`, see docs/your-data.md):
- `columns`: the source's header -> the contract column (顧客ID: contact_id).
- `values`: per contract column, the source's codes -> the contract's values (完了: completed).
- `formats`: per date or timestamp column, strptime formats (%Y/%m/%d %H:%M, %Y年%m月%d日).
- per source: `timezone` for timestamps written without an offset (Asia/Tokyo by default),
  `currency` and `amounts_in_minor_units` for money columns.

Without any configuration, booleans written the usual ways (はい/いいえ, ○/×, 有/無, yes/no, 1/0)
are read as true/false, money is read with its separators and signs removed (¥1,280, １２８０円),
and a timestamp without an offset is taken in the source's time zone. A value that still does
not fit is left as it was, so the contract check quarantines it with its column and value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ingestion.contracts import ContractError, ObjectContract

if TYPE_CHECKING:
    import polars as pl

    from ingestion.config import ObjectConfig, SourceConfig

# Boolean spellings every source may use; compared after NFKC, trimming and lower-casing.
_TRUE = ["true", "t", "yes", "y", "1", "on", "はい", "○", "〇", "◯", "有", "あり"]
_FALSE = ["false", "f", "no", "n", "0", "off", "いいえ", "×", "✕", "無", "なし"]
BOOLEAN_VALUES = {**dict.fromkeys(_TRUE, "true"), **dict.fromkeys(_FALSE, "false")}  # fmt: skip

# an ISO date or date-time with no offset: a local time of the source
_NAIVE_TIMESTAMP = r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?$"
_ISO_WITH_OFFSET = "%Y-%m-%dT%H:%M:%S%.f%:z"
_MONEY_NOISE = r"[,\s¥$€£円]"


@dataclass(frozen=True)
class ObjectMapping:
    columns: dict[str, str] = field(default_factory=dict)
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    formats: dict[str, tuple[str, ...]] = field(default_factory=dict)
    timezone: str = "Asia/Tokyo"
    minor_unit_digits: int = 0
    amounts_in_minor_units: bool = False

    @classmethod
    def of(cls, source: SourceConfig | None, obj: ObjectConfig | None) -> ObjectMapping:
        """The mapping the configuration gives an object (defaults when not configured)."""
        if source is None:
            return cls()
        return cls(
            columns=dict(obj.columns) if obj else {},
            values={k: dict(v) for k, v in obj.values.items()} if obj else {},
            formats={c: tuple(obj.format_list(c)) for c in obj.formats} if obj else {},
            timezone=source.timezone,
            minor_unit_digits=source.minor_unit_digits,
            amounts_in_minor_units=source.amounts_in_minor_units,
        )


def conform(
    frame: pl.DataFrame, contract: ObjectContract, mapping: ObjectMapping, where: str
) -> pl.DataFrame:
    """`frame` (text columns, as read) renamed and normalised to the contract's terms."""
    frame = _rename(frame, mapping.columns, where)
    present = [c for c in contract.columns.values() if c.name in frame.columns]
    needed = _needs_normalising(frame, present)
    expressions = []
    for column in present:
        expression = _conformed(column, mapping, needed.get(column.name, False))
        if expression is not None:
            expressions.append(expression.alias(column.name))
    return frame.with_columns(expressions) if expressions else frame


def _needs_normalising(frame: pl.DataFrame, columns: list) -> dict[str, bool]:
    """Which columns hold a value the defaults would change, in one pass: most batches (a
    system that writes ISO timestamps and true/false) need nothing, and a large batch should
    not pay for parsing every value to find that out."""
    import polars as pl

    checks = []
    for column in columns:
        value = pl.col(column.name)
        if column.type == "boolean":
            checks.append((~value.is_in(["true", "false"]) & value.is_not_null()).any())
        elif column.type == "timestamp":
            checks.append(value.str.contains(_NAIVE_TIMESTAMP).any())
        elif column.money:
            checks.append(value.str.contains(_MONEY_NOISE + "|[^\\x00-\\x7f]").any())
        else:
            continue
        checks[-1] = checks[-1].fill_null(False).alias(column.name)
    return frame.select(checks).row(0, named=True) if checks and frame.height else {}


def _rename(frame: pl.DataFrame, columns: dict[str, str], where: str) -> pl.DataFrame:
    renames = {src: dst for src, dst in columns.items() if src in frame.columns and src != dst}
    clashes = [dst for dst in renames.values() if dst in frame.columns and dst not in renames]
    if clashes:
        raise ContractError(
            f"{where}: the source already has column(s) {', '.join(clashes)}, which the "
            "configured `columns` mapping also produces: map or rename one of them"
        )
    return frame.rename(renames) if renames else frame


def _conformed(column, mapping: ObjectMapping, needed: bool) -> pl.Expr | None:
    """The column's normalising expression, or None when it needs none (`needed`: its values
    need the default normalisation)."""
    import polars as pl

    text = pl.col(column.name)
    values = mapping.values.get(column.name)
    changed = False
    if values:
        text = text.replace(values)
        changed = needed = True
    if column.type == "boolean" and needed:
        key = text.str.normalize("NFKC").str.strip_chars().str.to_lowercase()
        text = key.replace_strict(BOOLEAN_VALUES, default=text, return_dtype=pl.String)
        changed = True
    elif column.type in ("date", "timestamp") and column.name in mapping.formats:
        text = _parsed(text, column.type, mapping.formats[column.name], mapping.timezone)
        changed = True
    elif column.type == "timestamp" and needed:
        text = _localised(text, mapping.timezone)
        changed = True
    if column.money and (needed or mapping.amounts_in_minor_units):
        text = _money(text, mapping)
        changed = True
    return text if changed else None


def _parsed(text: pl.Expr, kind: str, formats: tuple[str, ...], zone: str) -> pl.Expr:
    """Dates or local times in the given formats as ISO text; other values unchanged."""
    import polars as pl

    trimmed = text.str.normalize("NFKC").str.strip_chars()
    if kind == "date":
        parsed = [trimmed.str.strptime(pl.Date, f, strict=False) for f in formats]
        return pl.coalesce(parsed).dt.strftime("%Y-%m-%d").fill_null(text)
    parsed = [trimmed.str.strptime(pl.Datetime("us"), f, strict=False) for f in formats]
    local = pl.coalesce(parsed).dt.replace_time_zone(
        zone, ambiguous="earliest", non_existent="null"
    )
    return local.dt.strftime(_ISO_WITH_OFFSET).fill_null(text)


def _localised(text: pl.Expr, zone: str) -> pl.Expr:
    """An ISO timestamp without an offset is a local time of the source: given its offset."""
    import polars as pl

    naive = text.str.strip_chars()
    local = (
        naive.str.replace(" ", "T")
        .str.to_datetime(time_unit="us", strict=False)
        .dt.replace_time_zone(zone, ambiguous="earliest", non_existent="null")
        .dt.strftime(_ISO_WITH_OFFSET)
    )
    return pl.when(naive.str.contains(_NAIVE_TIMESTAMP)).then(local.fill_null(text)).otherwise(text)


def _money(text: pl.Expr, mapping: ObjectMapping) -> pl.Expr:
    """Amounts without separators, currency signs or full-width digits; in major units."""
    import polars as pl

    cleaned = text.str.normalize("NFKC").str.replace_all(_MONEY_NOISE, "")
    cleaned = pl.when(cleaned == "").then(None).otherwise(cleaned)
    if not mapping.amounts_in_minor_units or mapping.minor_unit_digits == 0:
        return cleaned
    digits = mapping.minor_unit_digits
    amount = cleaned.cast(pl.Int64, strict=False)
    sign = pl.when(amount < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    whole = (amount.abs() // 10**digits).cast(pl.String)
    fraction = (amount.abs() % 10**digits).cast(pl.String).str.zfill(digits)
    return pl.concat_str([sign, whole, pl.lit("."), fraction]).fill_null(cleaned)
