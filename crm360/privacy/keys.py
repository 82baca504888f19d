"""The secret key of salted hashes: erasure records and the masked copy's hashed columns.

It is a file beside the warehouse (`CRM360_PRIVACY_KEY_FILE`, by default `privacy.key` in the
warehouse's folder), created on first use, readable by its owner only, never copied into the
analysts' copy or an export. Losing it means a re-sent row of an erased person can no longer
be recognised: back it up with the warehouse.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def read_key(path: Path) -> str:
    """The key (64 hex characters), created with 0600 on first use."""
    try:
        key = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = secrets.token_hex(32)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            return read_key(path)
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(key + "\n")
        return key
    if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
        raise ValueError(f"{path} is not a privacy key (64 hexadecimal characters)")
    return key


KEY_FILE_ENV = "CRM360_PRIVACY_KEY_FILE"


def key_path(warehouse: Path) -> Path:
    """Where the key of `warehouse` lives: CRM360_PRIVACY_KEY_FILE, else beside it."""
    value = os.environ.get(KEY_FILE_ENV)
    return Path(value).expanduser().resolve() if value else warehouse.parent / "privacy.key"


def key_for(con) -> str:
    """The key of the warehouse `con` has open."""
    path = con.execute(
        "select path from duckdb_databases() where database_name = current_database()"
    ).fetchall()[0][0]
    return read_key(key_path(Path(path)))
