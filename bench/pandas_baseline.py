"""The baseline a user would otherwise write: the core marts in plain pandas.

From the same source files, the customer 360 aggregates (orders, revenue and margin, first and
last order, e-mail sends / opens / clicks, web sessions with a 30-minute gap, support tickets)
and the RFM quintile scores of every buyer, as of the same date. Identity is the simple rule
such a script uses: a shop account belongs to its CRM contact id when it carries one, else it is
a customer of its own. Read with pandas' pyarrow engines where pandas has them (its fastest
path). Run as `python -m bench.pandas_baseline SOURCE_DIR AS_OF`; prints one JSON line.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from datetime import date
from pathlib import Path


def core_marts(source_dir: Path, as_of: date) -> dict:
    import pandas as pd

    started = time.perf_counter()
    cutoff = pd.Timestamp(as_of, tz="UTC")
    shop = sqlite3.connect(source_dir / "shop" / "orders.sqlite")
    customers = pd.read_sql("select customer_id, contact_id from customers", shop)
    orders = pd.read_sql("select order_id, customer_id, ordered_at, status from orders", shop)
    items = pd.read_sql("select order_id, product_id, quantity, unit_price from order_items", shop)
    products = pd.read_sql("select product_id, unit_cost from products", shop)
    shop.close()

    customers["customer_key"] = customers["contact_id"].where(
        customers["contact_id"].notna() & (customers["contact_id"] != ""),
        "shop:" + customers["customer_id"].astype(str),
    )
    orders["ordered_at"] = pd.to_datetime(orders["ordered_at"], utc=True, format="ISO8601")
    orders = orders[(orders["status"] == "completed") & (orders["ordered_at"] < cutoff)]
    lines = items.merge(products, on="product_id")
    lines["revenue"] = lines["quantity"] * lines["unit_price"]
    lines["margin"] = lines["quantity"] * (lines["unit_price"] - lines["unit_cost"])
    totals = lines.groupby("order_id", as_index=False)[["revenue", "margin"]].sum()
    orders = orders.merge(totals, on="order_id", how="left").merge(
        customers[["customer_id", "customer_key"]], on="customer_id"
    )
    c360 = orders.groupby("customer_key").agg(
        order_count=("order_id", "count"),
        total_revenue=("revenue", "sum"),
        total_gross_margin=("margin", "sum"),
        first_ordered_at=("ordered_at", "min"),
        last_ordered_at=("ordered_at", "max"),
    )
    c360["days_since_last_order"] = (cutoff - c360["last_ordered_at"]).dt.days

    email = pd.concat(
        pd.read_csv(path, engine="pyarrow", dtype=str)
        for path in sorted((source_dir / "email").glob("events_*.csv"))
    )
    email = email[email["contact_id"].notna()]
    email_stats = email.pivot_table(
        index="contact_id", columns="event_type", values="campaign_id", aggfunc="nunique"
    ).reindex(columns=["send", "open", "click"], fill_value=0)
    email_stats.columns = ["email_send_count", "email_unique_open_count", "email_click_count"]

    web = pd.concat(
        _read_jsonl(path)
        for path in sorted((source_dir / "web" / "events").glob("date=*/events.jsonl"))
    )
    web = web[web["shop_customer_id"].notna()][["shop_customer_id", "occurred_at"]]
    web["occurred_at"] = pd.to_datetime(web["occurred_at"], utc=True, format="ISO8601")
    web = web.sort_values(["shop_customer_id", "occurred_at"])
    gap = web.groupby("shop_customer_id")["occurred_at"].diff()
    web["new_session"] = gap.isna() | (gap > pd.Timedelta(minutes=30))
    sessions = web.groupby("shop_customer_id")["new_session"].sum().rename("web_session_count")
    sessions = (
        sessions.to_frame()
        .merge(customers, left_index=True, right_on="customer_id")
        .groupby("customer_key")["web_session_count"]
        .sum()
    )

    tickets = _read_jsonl(source_dir / "support" / "tickets.jsonl")
    support = tickets.groupby("customer_email").size().rename("support_ticket_count")

    c360 = c360.join(email_stats, how="outer").join(sessions, how="outer")
    buyers = c360[c360["order_count"] > 0].copy()
    n = len(buyers)
    for score, column, ascending in [
        ("r_score", "days_since_last_order", False),
        ("f_score", "order_count", True),
        ("m_score", "total_revenue", True),
    ]:
        rank = buyers[column].rank(method="max", ascending=ascending)
        buyers[score] = ((5 * rank + n - 1) // n).astype(int)
    return {
        "rows": len(orders) + len(lines) + len(email) + len(web) + len(tickets),
        "customers": len(c360),
        "buyers": n,
        "support_emails": len(support),
        "seconds": time.perf_counter() - started,
    }


def _read_jsonl(path: Path):
    """pandas' fast reader; a file with a malformed line is re-read line by line, skipping it."""
    import pandas as pd
    import pyarrow as pa

    try:
        return pd.read_json(path, lines=True, engine="pyarrow")
    except pa.ArrowInvalid:
        records = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return pd.DataFrame.from_records(records)


def main() -> int:
    result = core_marts(Path(sys.argv[1]), date.fromisoformat(sys.argv[2]))
    print("BENCH-RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
