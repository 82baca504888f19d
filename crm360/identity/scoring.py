"""Identity resolution scored against a ground truth (the demo generator's _truth/identity.csv).

Pairwise: a pair of records is predicted to match when both carry the same customer id, and
truly matches when both belong to the same person. Precision = correct predicted pairs / all
predicted pairs; recall = correct predicted pairs / all true pairs. Two scopes: records with a
usable identifier (the ones identity resolution can link at all), and every record, counting
each unlinkable record (an anonymous device that never logged in...) as a missed link.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

_SCOPE_SQL = """
with truth as (
    select source || ':' || source_key as record_id, person_id,
    from read_csv(?, header = true, all_varchar = true)
),
scored as (
    select truth.record_id, truth.person_id,
        coalesce(graph.customer_id, 'unlinked:' || truth.record_id) as customer_id,
        graph.customer_id is not null as is_linked,
    from truth
    inner join id_scope using (record_id)
    left join identity.identity_graph as graph using (record_id)
    where {where}
),
true_pairs as (select sum(n * (n - 1) / 2) as pairs from (select count(*) as n from scored group by person_id)),
predicted_pairs as (select sum(n * (n - 1) / 2) as pairs from (select count(*) as n from scored group by customer_id)),
correct_pairs as (select sum(n * (n - 1) / 2) as pairs from (select count(*) as n from scored group by customer_id, person_id))
select
    (select count(*) from scored),
    (select pairs from true_pairs), (select pairs from predicted_pairs),
    (select pairs from correct_pairs),
    (select count(*) from (select person_id from scored where is_linked group by 1
                           having count(distinct customer_id) > 1)),
    (select count(*) from (select customer_id from scored where is_linked group by 1
                           having count(distinct person_id) > 1)),
    (select count(distinct person_id) from scored where is_linked),
    (select count(distinct customer_id) from scored where is_linked),
"""  # noqa: E501


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 4) if b else None


def score(con: duckdb.DuckDBPyConnection, truth_csv: Path) -> dict:
    """Pairwise precision, recall and F1 of the current identity graph; over-/under-merges."""
    con.execute(
        """
        create or replace temp table id_scope as
        select record_id from identity.identity_graph
        union all
        select record_id from identity.unlinkable_records
        """
    )
    result = {}
    for scope, where in (("linkable", "is_linked"), ("all", "true")):
        row = con.execute(_SCOPE_SQL.format(where=where), [str(truth_csv)]).fetchone()
        records, true_pairs, predicted, correct, split, merged, persons, customers = (
            int(v or 0) for v in row
        )
        precision, recall = _ratio(correct, predicted), _ratio(correct, true_pairs)
        f1 = (
            round(2 * precision * recall / (precision + recall), 4)
            if precision and recall
            else None
        )
        result[scope] = {
            "records": records,
            "true_pairs": true_pairs,
            "predicted_pairs": predicted,
            "correct_pairs": correct,
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "persons": persons,
            "customer_ids": customers,
            "persons_split_across_ids": split,
            "ids_merging_persons": merged,
        }
    return result


def main(argv: list[str] | None = None) -> int:
    """`python -m crm360.identity.scoring [WAREHOUSE] [TRUTH_CSV]`: print the scores as JSON."""
    import json
    import sys

    from crm360.settings import load_settings
    from crm360.warehouse import connect

    args = sys.argv[1:] if argv is None else argv
    settings = load_settings()
    warehouse = Path(args[0]) if args else settings.warehouse
    truth = Path(args[1]) if len(args) > 1 else settings.source_dir / "_truth" / "identity.csv"
    with connect(warehouse, read_only=True) as con:
        print(json.dumps(score(con, truth), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
