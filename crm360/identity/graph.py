"""Clusters from links, strongest link first, never breaking a cluster limit.

Links are applied in priority order (deterministic identifier types in their configured order,
then probabilistic matches by falling probability). A link that would give a cluster more
distinct values of an identifier type than `max_per_cluster` allows is refused and recorded:
the weaker link is the one dropped, because the stronger ones were applied first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import polars as pl


@dataclass
class Link:
    a: int
    b: int
    rule: str
    probability: float | None = None


@dataclass
class Clusters:
    root_of: list[int]
    first_link: dict[int, Link] = field(default_factory=dict)  # record -> link that joined it
    rejected: list[tuple[Link, str]] = field(default_factory=list)


def _limit_broken(va: dict, vb: dict, limits: dict[str, int]) -> str | None:
    for id_type, limit in limits.items():
        merged = va.get(id_type, set()) | vb.get(id_type, set())
        if len(merged) > limit:
            return (
                f"would give one customer {len(merged)} {id_type} values "
                f"(limit {limit}): {', '.join(sorted(merged)[:4])}"
            )
    return None


def build_clusters(
    n: int,
    links: list[Link],
    values: dict[int, dict[str, set[str]]],
    limits: dict[str, int],
) -> Clusters:
    """Union-find over `n` records. `links` must already be in priority order; `values` holds,
    per record, the values of each limited identifier type."""
    parent = list(range(n))
    size = [1] * n
    held: dict[int, dict[str, set[str]]] = {r: dict(v) for r, v in values.items()}
    result = Clusters(root_of=parent)

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for link in links:
        ra, rb = find(link.a), find(link.b)
        if ra == rb:
            continue
        va, vb = held.get(ra, {}), held.get(rb, {})
        broken = _limit_broken(va, vb, limits)
        if broken:
            result.rejected.append((link, broken))
            continue
        if size[ra] < size[rb]:
            ra, rb, va, vb = rb, ra, vb, va
        parent[rb] = ra
        size[ra] += size[rb]
        if vb:
            for id_type, vals in vb.items():
                va.setdefault(id_type, set()).update(vals)
            held[ra] = va
            held.pop(rb, None)
        for record in (link.a, link.b):
            result.first_link.setdefault(record, link)
    result.root_of = [find(x) for x in range(n)]
    return result


@dataclass
class LinkArrays:
    """Links as columns, in priority order: endpoints `a`, `b` (record indexes), `rule` and
    `probability` (NaN for a deterministic link)."""

    a: np.ndarray
    b: np.ndarray
    rule: np.ndarray
    probability: np.ndarray

    def link(self, position: int) -> Link:
        p = self.probability[position]
        return Link(int(self.a[position]), int(self.b[position]), str(self.rule[position]),
                    None if np.isnan(p) else float(p))  # fmt: skip


@dataclass
class ClusterArrays:
    root_of: np.ndarray  # record -> a record of its cluster (the same for every member)
    first_link: np.ndarray  # record -> position of the link that joined it, -1: none
    rejected: list[tuple[int, str]]  # (link position, reason), in link order


def cluster_links(
    n: int, links: LinkArrays, limited: pl.DataFrame, limits: dict[str, int]
) -> ClusterArrays:
    """The clusters `build_clusters` gives, computed by connected components.

    A connected component whose records together hold no more values of a limited type than
    the limit allows never meets the guard, so every link that joins two of its clusters is
    taken: its records form one cluster, and each record's joining link is the first link that
    touches it (a record is alone until the first link that names it). Only components that
    would break a limit (a few thousand at a million people) go through the ordered union-find.
    `limited` holds the limited values: idx, id_type, id_value."""
    import polars as pl
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    m = len(links.a)
    graph = coo_matrix((np.ones(m, dtype=np.int8), (links.a, links.b)), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    root_of = np.full(label.max() + 1 if n else 0, n, dtype=np.int64)
    np.minimum.at(root_of, label, np.arange(n))
    root_of = root_of[label]
    positions = np.arange(m, dtype=np.int64)
    first = np.full(n, m, dtype=np.int64)
    np.minimum.at(first, links.a, positions)
    np.minimum.at(first, links.b, positions)
    first[first == m] = -1

    contested = set()
    if limits and limited.height:
        held = (
            limited.with_columns(component=pl.Series(root_of)[limited["idx"]])
            # distinct values first, then counted: n_unique per group is slower at a million
            # components
            .unique(["component", "id_type", "id_value"])
            .group_by("component", "id_type")
            .agg(values=pl.len())
            .join(
                pl.DataFrame({"id_type": list(limits), "limit": list(limits.values())}),
                on="id_type",
            )  # fmt: skip
            .filter(pl.col("values") > pl.col("limit"))
        )
        contested = set(held["component"].to_list())
    rejected: list[tuple[int, str]] = []
    if contested:
        records = np.flatnonzero(np.isin(root_of, list(contested)))
        local = {int(r): i for i, r in enumerate(records)}
        in_sub = np.flatnonzero(np.isin(links.a, records))  # both ends share the component
        sub_links = [links.link(p) for p in in_sub]
        for lk in sub_links:
            lk.a, lk.b = local[lk.a], local[lk.b]
        values: dict[int, dict[str, set[str]]] = {}
        for idx, id_type, id_value in limited.filter(pl.col("idx").is_in(records)).iter_rows():
            values.setdefault(local[idx], {}).setdefault(id_type, set()).add(id_value)
        sub = build_clusters(len(records), sub_links, values, limits)
        position_of = {id(lk): int(p) for lk, p in zip(sub_links, in_sub, strict=True)}
        root_of[records] = records[np.asarray(sub.root_of, dtype=np.int64)]
        first[records] = -1
        for record, lk in sub.first_link.items():
            first[records[record]] = position_of[id(lk)]
        rejected = sorted((position_of[id(lk)], why) for lk, why in sub.rejected)
    return ClusterArrays(root_of, first, rejected)
