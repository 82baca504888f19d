"""Clusters from links, strongest link first, never breaking a cluster limit.

Links are applied in priority order (deterministic identifier types in their configured order,
then probabilistic matches by falling probability). A link that would give a cluster more
distinct values of an identifier type than `max_per_cluster` allows is refused and recorded:
the weaker link is the one dropped, because the stronger ones were applied first.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
