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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl


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


@dataclass
class FrameAssignment:
    customer_of: pl.DataFrame  # root, customer_id
    changes: pl.DataFrame  # old_customer_id, new_customer_id, change_type, reason (in order)
    new_ids: pl.DataFrame  # customer_id, anchor_record_id (in order of issue)
    retired: set[str]


def assign_ids_frame(
    members: pl.DataFrame, previous: pl.DataFrame, registry: pl.DataFrame
) -> FrameAssignment:
    """`assign_ids` on columns, with the same result, for millions of records.

    `members`: idx, root, record_id, rule (how the record is linked, null for the anchor) of
    every record of a customer cluster; `previous`: record_id, customer_id of the last run;
    `registry`: customer_id, first_as_of_date, issued_at of every id ever issued."""
    import polars as pl

    m = members.join(previous.rename({"customer_id": "old"}), on="record_id", how="left")
    firsts = m.group_by("root").agg(first=pl.col("idx").min())
    anchors = firsts.join(m.select(first="idx", anchor="record_id"), on="first")
    with_old = m.filter(pl.col("old").is_not_null())
    counts = with_old.group_by("root", "old").agg(count=pl.len()).join(firsts, on="root")
    # the cluster holding most of an old id's records keeps it (ties: the earliest cluster)
    keeper = (
        counts.sort(["count", "first"], descending=[True, False])
        .group_by("old", maintain_order=True)
        .first()
        .select("old", keeper="root")
    )
    seen = registry.select(old="customer_id", seen_date="first_as_of_date", seen_at="issued_at")
    kept = (
        counts.join(keeper, on="old")
        .filter(pl.col("root") == pl.col("keeper"))
        .join(seen, on="old", how="left")
        .sort(["first", "seen_date", "seen_at", "old"], nulls_last=False)
    )
    # the first of each cluster's kept ids survives; the others (few) merge into it, in order
    survivor = kept["root"].is_first_distinct()
    survivors = kept.filter(survivor).select("root", customer_id="old")
    merges = (
        kept.filter(~survivor)
        .with_columns(rank=pl.int_range(1, pl.len() + 1).over("root"))
        .join(survivors, on="root")
    )
    # how the merged records link, for the few merges only (not for every cluster)
    rules = (
        with_old.join(merges.select("root", "old"), on=["root", "old"])
        .group_by("root", "old")
        .agg(rules=pl.col("rule").fill_null("anchor").unique().sort())
    )
    merges = merges.join(rules, on=["root", "old"]).select(
        "first", "rank",
        old_customer_id="old", new_customer_id="customer_id",
        change_type=pl.lit("merge"),
        reason=pl.format("its records now link to {}'s (by {})", "customer_id",
                         pl.col("rules").list.join(", ")),
    )  # fmt: skip

    fresh = anchors.join(survivors, on="root", how="anti").sort("first")
    earlier = pl.concat([registry["customer_id"], previous["customer_id"]]).unique()
    candidates = pl.Series([new_customer_id(a, set()) for a in fresh["anchor"].to_list()],
                           dtype=pl.String)  # fmt: skip
    issued_before = set(candidates.filter(candidates.is_in(earlier.implode())).to_list())
    issued: list[str] = []
    issued_now: set[str] = set()
    taken: set[str] | None = None  # every id issued before or now, built when a salt needs it
    for anchor, candidate in zip(fresh["anchor"].to_list(), candidates.to_list(), strict=True):
        if candidate in issued_before or candidate in issued_now:  # salted, as assign_ids does
            if taken is None:
                taken = set(earlier.to_list()) | issued_now
            candidate = new_customer_id(anchor, taken)
        if taken is not None:
            taken.add(candidate)
        issued_now.add(candidate)
        issued.append(candidate)
    fresh = fresh.with_columns(customer_id=pl.Series(issued, dtype=pl.String))
    splits = counts.join(fresh.select("root", "anchor", "customer_id"), on="root").select(
        "first",
        rank=pl.lit(0, dtype=pl.Int64),
        old_customer_id="old", new_customer_id="customer_id",
        change_type=pl.lit("split"),
        reason=pl.format("{} of its records no longer link to the rest (anchor {})",
                         "count", "anchor"),
    )  # fmt: skip
    changes = (
        pl.concat([merges.with_columns(pl.col("rank").cast(pl.Int64)), splits])
        .sort(["first", "rank", "old_customer_id"])
        .drop("first", "rank")
    )
    customer_of = pl.concat([survivors, fresh.select("root", "customer_id")])
    # earlier ids that no cluster holds now and that were not merged into one
    held = pl.concat([customer_of["customer_id"], merges["old_customer_id"]])
    retired = previous.select(pl.col("customer_id").unique()).filter(
        ~pl.col("customer_id").is_in(held.implode())
    )["customer_id"]
    return FrameAssignment(
        customer_of=customer_of,
        changes=changes,
        new_ids=fresh.select("customer_id", anchor_record_id="anchor"),
        retired=set(retired.to_list()),
    )
