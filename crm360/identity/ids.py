"""Stable customer ids across runs, with every merge and split written down.

A cluster keeps the id its records had before. When records of several earlier customers end
up in one cluster (a merge) the oldest id survives and the others are recorded as merged into
it. When an earlier customer's records end up in several clusters (a split), the cluster
holding most of them keeps the id and the others get new ones, recorded as split from it. A new
id is 'cus_' + the first 16 hex digits of md5 of the cluster's anchor record ('crm:<contact>',
else 'shop:<account>', ...), so rebuilding from scratch gives the same ids; an id once issued is
never issued again to anyone else.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field


def new_customer_id(anchor: str, taken: set[str]) -> str:
    candidate = "cus_" + hashlib.md5(anchor.encode()).hexdigest()[:16]
    salt = 1
    while candidate in taken:
        salt += 1
        candidate = "cus_" + hashlib.md5(f"{anchor}#{salt}".encode()).hexdigest()[:16]
    return candidate


@dataclass
class Assignment:
    customer_of: dict[int, str]  # cluster root -> customer id
    changes: list[dict] = field(default_factory=list)  # old id, new id, type, reason
    new_ids: dict[str, str] = field(default_factory=dict)  # new customer id -> anchor record
    retired: set[str] = field(default_factory=set)  # earlier ids that no cluster holds now


def assign_ids(
    clusters: dict[int, list[int]],
    record_ids: list[str],
    previous: dict[str, str],
    first_seen: dict[str, tuple],
    rules: dict[int, str],
) -> Assignment:
    """`clusters`: root -> member record indexes (ascending, so the first is the anchor);
    `previous`: record id -> customer id of the last run; `first_seen`: customer id ->
    sort key of when it was issued (registry); `rules`: record index -> how it is linked."""
    prior: dict[int, Counter] = {}
    holders: dict[str, list[tuple[int, int, int]]] = {}  # old id -> (count, -first member, root)
    for root, members in clusters.items():
        counts = Counter(previous[record_ids[m]] for m in members if record_ids[m] in previous)
        prior[root] = counts
        for old, count in counts.items():
            holders.setdefault(old, []).append((count, -members[0], root))
    keeper = {old: max(options)[2] for old, options in holders.items()}

    taken = set(first_seen) | set(previous.values())
    result = Assignment(customer_of={})
    for root in sorted(clusters, key=lambda r: clusters[r][0]):
        members = clusters[root]
        kept = sorted((old for old in prior[root] if keeper[old] == root),
                      key=lambda old: (first_seen.get(old, ("",)), old))  # fmt: skip
        if kept:
            survivor = kept[0]
            for old in kept[1:]:
                how = sorted({rules.get(m, "anchor") for m in members
                              if previous.get(record_ids[m]) == old})  # fmt: skip
                result.changes.append({
                    "old_customer_id": old, "new_customer_id": survivor, "change_type": "merge",
                    "reason": f"its records now link to {survivor}'s (by {', '.join(how)})",
                })  # fmt: skip
        else:
            survivor = new_customer_id(record_ids[members[0]], taken)
            taken.add(survivor)
            result.new_ids[survivor] = record_ids[members[0]]
            for old in sorted(prior[root]):
                result.changes.append({
                    "old_customer_id": old, "new_customer_id": survivor, "change_type": "split",
                    "reason": f"{prior[root][old]} of its records no longer link to the rest "
                    f"(anchor {record_ids[members[0]]})",
                })  # fmt: skip
        result.customer_of[root] = survivor
    assigned = set(result.customer_of.values())
    merged = {c["old_customer_id"] for c in result.changes if c["change_type"] == "merge"}
    result.retired = set(previous.values()) - assigned - merged
    return result
