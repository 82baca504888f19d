"""Render the source contracts as dbt `sources` files and as documentation.

The contracts (`ingestion/contracts/*.yml`) are the single description of each source; the dbt
sources (`dbt_project/models/staging/<source>/_<source>__sources.yml`) and `docs/contracts.md`
are generated from them, so they cannot disagree. Run after changing a contract:

    .venv/bin/python -m ingestion.render
"""

from __future__ import annotations

import sys

import yaml

from crm360.settings import PROJECT_ROOT
from ingestion.contracts import contract_sources, load_contract
from ingestion.raw import META_COLUMNS

_HEADER = (
    "# Generated from ingestion/contracts/{source}.yml by `python -m ingestion.render`:"
    " edit the contract.\n"
)
_META_DESCRIPTIONS = {
    "_load_id": "Load that wrote the row (raw._loads).",
    "_source": "Source system.",
    "_source_location": "File, table or URL the row came from.",
    "_source_row": "1-based row in that file or batch.",
    "_loaded_at": "When the row was loaded (UTC).",
}


def sources_yaml(source: str) -> str:
    objects = load_contract(source)
    spec = yaml.safe_load(
        (PROJECT_ROOT / "ingestion" / "contracts" / f"{source}.yml").read_text("utf-8")
    )
    tables = []
    for contract in objects.values():
        columns = []
        for column in contract.columns.values():
            entry = {"name": column.name, "description": column.description or column.name}
            if column.pii:
                entry["tags"] = ["pii"]
            columns.append(entry)
        columns += [
            {"name": name, "description": _META_DESCRIPTIONS[name]} for name in META_COLUMNS
        ]
        tables.append({
            "name": contract.raw_table,
            "description": (contract.description or f"{contract.source} {contract.name}.")
            + f" Primary key: {', '.join(contract.primary_key)}; every version of a row is kept"
            " (staging keeps the latest).",
            "columns": columns,
        })  # fmt: skip
    document = {
        "version": 2,
        "sources": [{
            "name": source,
            "description": " ".join(spec["description"].split()),
            "schema": "raw",
            "loaded_at_field": "_loaded_at",
            "freshness": {"warn_after": {"count": 26, "period": "hour"}},
            "tables": tables,
        }],
    }  # fmt: skip
    body = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
    return _HEADER.format(source=source) + body


def contracts_markdown() -> str:
    lines = [
        "# Source contracts",
        "",
        "Generated from `ingestion/contracts/*.yml` by `python -m ingestion.render`. Where each",
        "source's data lives is configured in `config/sources.yml`.",
        "",
        "A row that breaks its contract (missing required value or key, a value that does not",
        "parse as its type, a value outside the allowed set or bounds, a duplicate key within one",
        "load, bytes invalid in the file's encoding, a malformed JSON line) is kept in",
        "`raw._quarantine` with the reason and its original values. A column the contract does",
        "not know is kept and logged; a missing required column fails the load.",
        "",
        "Before the check, each batch is mapped from the source's own shape (column names, codes,",
        "date formats, time zone, currency) as `config/sources.yml` says: see",
        "[your-data.md](your-data.md). Every source is optional: the list under each source says",
        "what the marts lose without it.",
        "",
    ]
    for source in contract_sources():
        spec = yaml.safe_load(
            (PROJECT_ROOT / "ingestion" / "contracts" / f"{source}.yml").read_text("utf-8")
        )
        lines += [f"## {source}", "", " ".join(spec["description"].split()), ""]
        if spec.get("feeds"):
            lines += ["Without it:", ""] + [f"- {item}" for item in spec["feeds"]] + [""]
        for contract in load_contract(source).values():
            meta = [f"format `{contract.format}`", f"key `{', '.join(contract.primary_key)}`"]
            if contract.format in ("csv", "jsonl"):
                meta.append("encodings " + ", ".join(f"`{e}`" for e in contract.encodings))
            if contract.watermark:
                meta.append(f"incremental by `{contract.watermark}`")
            lines += [
                f"### {source}.{contract.name} → `raw.{contract.raw_table}`",
                "",
                "; ".join(meta),
                "",
            ]
            lines += [
                "| column | type | required | rules | PII | description |",
                "|---|---|---|---|---|---|",
            ]
            for c in contract.columns.values():
                required = (
                    "key" if c.name in contract.primary_key else ("yes" if c.required else "")
                )
                lines.append(
                    f"| `{c.name}` | {c.type} | {required} | {'; '.join(_rules(c))} | "
                    f"{'yes' if c.pii else ''} | {c.description} |"
                )
            lines.append("")
    return "\n".join(lines)


def _rules(column) -> list[str]:
    rules = []
    if column.allowed:
        rules.append("one of " + ", ".join(f"`{v}`" for v in column.allowed))
    if column.money:
        rules.append("money")
    if column.min is not None:
        rules.append(f"≥ {column.min:g}")
    if column.max is not None:
        rules.append(f"≤ {column.max:g}")
    return rules


def rendered_files() -> dict:
    files = {PROJECT_ROOT / "docs" / "contracts.md": contracts_markdown()}
    for source in contract_sources():
        folder = PROJECT_ROOT / "dbt_project" / "models" / "staging" / source
        files[folder / f"_{source}__sources.yml"] = sources_yaml(source)
    return files


def main() -> int:
    for path, text in rendered_files().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(PROJECT_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
