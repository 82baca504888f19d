"""CRM contacts: a CSV export (UTF-8 or Shift_JIS/CP932) loaded into `raw.crm_contacts`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ingestion.contracts import ContractError, load_contract
from ingestion.raw import LoadResult, load_object

if TYPE_CHECKING:
    import duckdb
    import polars as pl


def read_contacts(path: Path, encoding: str) -> pl.DataFrame:
    """Read the export with every column as text; values are cast and checked later."""
    import polars as pl

    if not path.exists():
        raise ContractError(f"CRM contacts export not found: {path}")
    data = path.read_bytes()
    if encoding.lower().replace("-", "").replace("_", "") not in ("utf8", "utf8sig"):
        try:
            data = data.decode(encoding).encode("utf-8")
        except UnicodeDecodeError as exc:
            raise ContractError(f"{path}: not valid {encoding} at byte {exc.start}") from exc
    return pl.read_csv(data, infer_schema=False)


def load_contacts(
    con: duckdb.DuckDBPyConnection, source_dir: Path, run_id: str | None = None
) -> LoadResult:
    contract = load_contract("crm")["contacts"]
    path = source_dir / contract.file
    return load_object(con, contract, read_contacts(path, contract.encoding), str(path), run_id)
