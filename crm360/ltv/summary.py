"""From a transaction log to the per-customer statistics the buy-till-you-die models take.

For each customer with a purchase on or before the calibration end:

- `frequency`: repeat purchase days (distinct days with a purchase, less the first one); several
  transactions on one day are one purchase, as in Fader, Hardie & Lee (2005);
- `recency`: time from the first to the last purchase day;
- `T`: time from the first purchase day to the calibration end (the customer's age);
- `monetary_value`: mean value of the repeat purchase days (the first day excluded, 0 without a
  repeat), the input of the Gamma-Gamma spend model.

Times are in units of `time_unit_days` days (7: weeks). Days are calendar days of the given
timestamps. With an `observation_end`, a holdout period (calibration end, observation end] adds
`frequency_holdout` (purchase days in it), `monetary_value_holdout` (their mean value, 0 without)
and `duration_holdout`.

The statistics are computed in DuckDB by one SQL definition (`summary_sql`): the LTV models
summarise the warehouse's orders where they are, and `summarise_transactions` runs the same SQL
on a pandas frame.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

SUMMARY_COLUMNS = ["frequency", "recency", "T", "monetary_value"]
HOLDOUT_COLUMNS = ["frequency_holdout", "monetary_value_holdout", "duration_holdout"]


def summary_sql(
    transactions: str,
    calibration_end: date,
    time_unit_days: float,
    *,
    monetary: bool = True,
    observation_end: date | None = None,
) -> str:
    """SQL of the summary: one row per customer with a purchase day on or before
    `calibration_end`, ordered by customer, with the columns `customer_id`, SUMMARY_COLUMNS
    (`monetary_value` only when `monetary`) and, with an `observation_end`, HOLDOUT_COLUMNS.

    `transactions` is the SQL of a relation with `customer_id`, `day` (the purchase's calendar
    day, a DATE) and, when `monetary`, `value` (a number): one row per transaction."""
    if time_unit_days <= 0:
        raise ValueError(f"time_unit_days must be positive, got {time_unit_days}")
    if observation_end is not None and observation_end <= calibration_end:
        raise ValueError(
            f"observation_end {observation_end:%Y-%m-%d} must be after the calibration end "
            f"{calibration_end:%Y-%m-%d}"
        )
    unit = repr(float(time_unit_days))
    calibration = f"date '{calibration_end.isoformat()}'"
    value = "sum(cast(value as double))" if monetary else "0.0"
    monetary_value = (
        ", case when count(*) > 1"
        " then (sum(value) - arg_min(value, day)) / (count(*) - 1) else 0.0 end as monetary_value"
        if monetary
        else ""
    )
    # the columns after the calibration's and the FROM clause
    rest = "\n        from calibration"
    if observation_end is not None:
        observation = f"date '{observation_end.isoformat()}'"
        rest = f"""
            , cast(coalesce(holdout.purchase_days, 0) as double) as frequency_holdout
            , coalesce(holdout.mean_value, 0.0) as monetary_value_holdout
            , ({observation} - {calibration}) / {unit} as duration_holdout
        from calibration
        left join (
            select customer_id, count(*) as purchase_days, avg(value) as mean_value,
            from purchase_days
            where day > {calibration} and day <= {observation}
            group by customer_id
        ) as holdout using (customer_id)"""
    return f"""
        with purchase_days as (
            select customer_id, day, {value} as value,
            from ({transactions})
            group by customer_id, day
        ),
        calibration as (
            select customer_id,
                cast(count(*) - 1 as double) as frequency,
                (max(day) - min(day)) / {unit} as recency,
                ({calibration} - min(day)) / {unit} as T
                {monetary_value}
            from purchase_days
            where day <= {calibration}
            group by customer_id
        )
        select calibration.*{rest}
        order by customer_id
    """


def summarise_transactions(
    transactions: pd.DataFrame,
    calibration_end: date | datetime | str,
    time_unit_days: float = 7.0,
    *,
    customer_col: str = "customer_id",
    datetime_col: str = "ordered_at",
    monetary_col: str | None = None,
    observation_end: date | datetime | str | None = None,
) -> pd.DataFrame:
    """Summarise a transaction log (one row per transaction) per customer, indexed by customer.

    Transactions after `calibration_end` (a day, inclusive) are ignored, except those up to
    `observation_end` (inclusive), which fill the holdout columns."""
    import duckdb
    import pandas as pd

    missing = {customer_col, datetime_col, monetary_col or customer_col} - set(transactions)
    if missing:
        raise KeyError(f"transaction log lacks column(s) {sorted(missing)}")
    moments = pd.to_datetime(transactions[datetime_col])
    if moments.dt.tz is not None:  # time-zone aware: days are UTC days
        moments = moments.dt.tz_convert("UTC").dt.tz_localize(None)
    frame = pd.DataFrame(
        {
            "customer_id": transactions[customer_col].to_numpy(),
            "day": moments.dt.normalize().to_numpy(),
        }
    )
    if monetary_col is not None:
        frame["value"] = transactions[monetary_col].astype(float).to_numpy()
    if frame["customer_id"].isna().any() or frame["day"].isna().any():
        raise ValueError("transaction log has rows without a customer or a time")
    sql = summary_sql(
        "select customer_id, cast(day as date) as day"
        + (", value" if monetary_col is not None else "")
        + " from transactions",
        pd.Timestamp(calibration_end).date(),
        time_unit_days,
        monetary=monetary_col is not None,
        observation_end=None if observation_end is None else pd.Timestamp(observation_end).date(),
    )
    with duckdb.connect() as con:
        con.register("transactions", frame)
        summary = con.sql(sql).df()
    return summary.set_index("customer_id").rename_axis(customer_col)
