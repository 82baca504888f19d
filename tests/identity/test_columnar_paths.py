"""The columnar clustering and id assignment give exactly what the ordered reference does.

`cluster_links` and `assign_ids_frame` are what resolution runs at a million people;
`build_clusters` and `assign_ids` are the record-by-record definitions. On random graphs with
guards that bite, and random previous runs with merges, splits, retired and reissued ids, both
must agree on every cluster, joining link, refused link, id, change and its order.
"""

from __future__ import annotations

import random

import numpy as np
import polars as pl
import pytest

from crm360.identity.graph import Link, LinkArrays, build_clusters, cluster_links
from crm360.identity.ids import assign_ids, assign_ids_frame, new_customer_id

LIMITS = {"crm_id": 1, "email": 2}


def random_graph(rng: random.Random, n: int):
    links = []
    for _ in range(rng.randint(0, 2 * n)):
        a, b = rng.sample(range(n), 2)
        if rng.random() < 0.7:
            links.append(Link(a, b, rng.choice(["crm_id", "email", "phone"])))
        else:
            links.append(Link(a, b, "probabilistic", round(rng.uniform(0.99, 1.0), 4)))
    values: dict[int, dict[str, set[str]]] = {}
    rows = []
    for idx in range(n):
        if rng.random() < 0.3:
            values.setdefault(idx, {}).setdefault("crm_id", set()).add(f"C{idx}")
            rows.append((idx, "crm_id", f"C{idx}"))
        if rng.random() < 0.5:
            email = f"e{rng.randint(0, n // 2)}"
            values.setdefault(idx, {}).setdefault("email", set()).add(email)
            rows.append((idx, "email", email))
    limited = pl.DataFrame(rows, schema={"idx": pl.Int64, "id_type": pl.String,
                                         "id_value": pl.String}, orient="row")  # fmt: skip
    return links, values, limited


def as_arrays(links: list[Link]) -> LinkArrays:
    return LinkArrays(
        a=np.array([lk.a for lk in links], dtype=np.int64),
        b=np.array([lk.b for lk in links], dtype=np.int64),
        rule=np.array([lk.rule for lk in links], dtype=object),
        probability=np.array(
            [np.nan if lk.probability is None else lk.probability for lk in links]
        ),
    )


def partition(root_of) -> set[frozenset[int]]:
    groups: dict[int, set[int]] = {}
    for idx, root in enumerate(root_of):
        groups.setdefault(int(root), set()).add(idx)
    return {frozenset(g) for g in groups.values()}


@pytest.mark.parametrize("seed", range(40))
def test_cluster_links_equals_the_ordered_union_find(seed):
    rng = random.Random(seed)
    n = rng.randint(2, 60)
    links, values, limited = random_graph(rng, n)
    reference = build_clusters(n, links, values, LIMITS)
    fast = cluster_links(n, as_arrays(links), limited, LIMITS)

    assert partition(fast.root_of) == partition(reference.root_of)
    position = {id(lk): p for p, lk in enumerate(links)}
    assert {r: position[id(lk)] for r, lk in reference.first_link.items()} == {
        r: int(p) for r, p in enumerate(fast.first_link) if p >= 0
    }
    assert [(position[id(lk)], why) for lk, why in reference.rejected] == fast.rejected


def test_the_guards_bite_in_the_random_graphs():
    """The comparison above is only worth something if some links are refused."""
    refused = 0
    for seed in range(40):
        rng = random.Random(seed)
        n = rng.randint(2, 60)
        links, values, _ = random_graph(rng, n)
        refused += len(build_clusters(n, links, values, LIMITS).rejected)
    assert refused > 40


def random_run(seed: int):
    """This run's clusters over random records, a previous run holding random old ids, a
    registry with tied dates, and sometimes an anchor whose id was issued before."""
    rng = random.Random(seed)
    n = rng.randint(1, 50)
    record_ids = [f"{rng.choice(['crm', 'shop', 'web'])}:{i}" for i in range(n)]
    chosen = sorted(rng.sample(range(n), rng.randint(0, n)))
    clusters: dict[int, list[int]] = {}
    for idx in chosen:
        clusters.setdefault(rng.choice(chosen[: max(1, len(chosen) // 3)]), []).append(idx)
    clusters = {members[0]: members for members in clusters.values()}
    old_ids = [f"cus_old{i}" for i in range(rng.randint(0, 8))]
    previous = {record_ids[i]: rng.choice(old_ids) for i in range(n)
                if old_ids and rng.random() < 0.6}  # fmt: skip
    first_seen = {c: (f"2026-10-0{rng.randint(1, 3)}", "2026-10-01 00:00:00") for c in old_ids}
    if chosen and rng.random() < 0.5:
        taken = new_customer_id(record_ids[chosen[0]], set())
        first_seen[taken] = ("2026-09-01", "2026-09-01 00:00:00")
    rules = {m: rng.choice(["email", "phone", "probabilistic"]) for m in chosen
             if rng.random() < 0.7}  # fmt: skip
    return clusters, record_ids, previous, first_seen, rules


@pytest.mark.parametrize("seed", range(40))
def test_assign_ids_frame_equals_the_reference(seed):
    clusters, record_ids, previous, first_seen, rules = random_run(seed)
    reference = assign_ids(clusters, record_ids, previous, first_seen, rules)

    members = pl.DataFrame(
        [(m, root, record_ids[m], rules.get(m)) for root, ms in clusters.items() for m in ms],
        schema={"idx": pl.Int64, "root": pl.Int64, "record_id": pl.String, "rule": pl.String},
        orient="row",
    )
    registry = pl.DataFrame(
        [(c, d, t) for c, (d, t) in first_seen.items()],
        schema={"customer_id": pl.String, "first_as_of_date": pl.String, "issued_at": pl.String},
        orient="row",
    ).with_columns(pl.col("first_as_of_date").str.to_date(), pl.col("issued_at").str.to_datetime())
    previous_frame = pl.DataFrame(list(previous.items()), orient="row",
                                  schema={"record_id": pl.String, "customer_id": pl.String})  # fmt: skip
    fast = assign_ids_frame(members, previous_frame, registry)

    assert dict(fast.customer_of.iter_rows()) == reference.customer_of
    assert fast.changes.to_dicts() == reference.changes
    assert list(fast.new_ids.iter_rows()) == list(reference.new_ids.items())
    assert fast.retired == reference.retired


def test_the_random_runs_merge_split_and_reissue():
    """...and the id comparison only if merges, splits and salted reissues happen."""
    kinds: dict[str, int] = {}
    salted = 0
    for seed in range(40):
        result = assign_ids(*random_run(seed))
        for change in result.changes:
            kinds[change["change_type"]] = kinds.get(change["change_type"], 0) + 1
        salted += sum(new_customer_id(a, set()) != c for c, a in result.new_ids.items())
    assert kinds.get("merge", 0) > 10 and kinds.get("split", 0) > 10 and salted > 3
