"""Audience definitions: one YAML file each under `activation/audiences/`."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import yaml

AUDIENCE_DIR = Path(__file__).parent / "audiences"

# Every audience of a channel is limited to customers reachable on it with consent; a
# definition cannot widen this, it can only narrow it.
CHANNEL_SUPPRESSION = {
    "email": "is_email_contactable",
}


class AudienceDefinitionError(ValueError):
    """An audience definition file is malformed."""


@dataclass(frozen=True)
class Audience:
    name: str
    description: str
    owner: str
    channel: str
    where: str
    columns: tuple[str, ...]
    formats: tuple[str, ...]
    path: Path
    definition_sha256: str

    @property
    def suppression(self) -> str:
        return CHANNEL_SUPPRESSION[self.channel]


def load_audience(path: Path) -> Audience:
    text = path.read_text(encoding="utf-8")
    spec = yaml.safe_load(text) or {}
    missing = [k for k in ("name", "channel", "where", "columns") if k not in spec]
    if missing:
        raise AudienceDefinitionError(f"{path}: missing key(s) {', '.join(missing)}")
    if spec["channel"] not in CHANNEL_SUPPRESSION:
        raise AudienceDefinitionError(
            f"{path}: unknown channel {spec['channel']!r} (known: {', '.join(CHANNEL_SUPPRESSION)})"
        )
    if spec["name"] != path.stem:
        raise AudienceDefinitionError(f"{path}: name {spec['name']!r} must match the file name")
    return Audience(
        name=spec["name"],
        description=str(spec.get("description", "")).strip(),
        owner=spec.get("owner", ""),
        channel=spec["channel"],
        where=str(spec["where"]).strip(),
        columns=tuple(spec["columns"]),
        formats=tuple(spec.get("formats", ["csv"])),
        path=path,
        definition_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
    )


def load_audiences(directory: Path = AUDIENCE_DIR) -> list[Audience]:
    return [load_audience(p) for p in sorted(directory.glob("*.yml"))]
