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
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

SUMMARY_COLUMNS = ["frequency", "recency", "T", "monetary_value"]


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
    import pandas as pd

    if time_unit_days <= 0:
        raise ValueError(f"time_unit_days must be positive, got {time_unit_days}")
    calibration_day = pd.Timestamp(calibration_end).normalize()
    days = _purchase_days(transactions, customer_col, datetime_col, monetary_col)
    calibration = days[days["day"] <= calibration_day]
    unit = pd.Timedelta(days=time_unit_days)

    per_customer = calibration.groupby(customer_col, sort=True)
    first, last = per_customer["day"].min(), per_customer["day"].max()
    summary = pd.DataFrame(
        {
            "frequency": (per_customer["day"].count() - 1).astype(float),
            "recency": (last - first) / unit,
            "T": (calibration_day - first) / unit,
        }
    )
    if monetary_col is not None:
        total = per_customer["value"].sum()
        first_value = calibration.loc[per_customer["day"].idxmin(), [customer_col, "value"]]
        first_value = first_value.set_index(customer_col)["value"]
        repeat_value = total - first_value
        summary["monetary_value"] = (repeat_value / summary["frequency"]).where(
            summary["frequency"] > 0, 0.0
        )
    if observation_end is not None:
        summary = _add_holdout(summary, days, calibration_day, observation_end, unit, customer_col)
    summary.index.name = customer_col
    return summary


def _purchase_days(
    transactions: pd.DataFrame, customer_col: str, datetime_col: str, monetary_col: str | None
) -> pd.DataFrame:
    """One row per customer and purchase day, with the day's total value."""
    import pandas as pd

    missing = {customer_col, datetime_col, monetary_col or customer_col} - set(transactions)
    if missing:
        raise KeyError(f"transaction log lacks column(s) {sorted(missing)}")
    moments = pd.to_datetime(transactions[datetime_col])
    if moments.dt.tz is not None:  # time-zone aware: days are UTC days
        moments = moments.dt.tz_convert("UTC").dt.tz_localize(None)
    values = transactions[monetary_col].astype(float) if monetary_col is not None else 0.0
    frame = pd.DataFrame(
        {
            customer_col: transactions[customer_col].to_numpy(),
            "day": moments.dt.normalize().to_numpy(),
            "value": values.to_numpy() if monetary_col is not None else values,
        }
    )
    if frame[customer_col].isna().any() or frame["day"].isna().any():
        raise ValueError("transaction log has rows without a customer or a time")
    return frame.groupby([customer_col, "day"], as_index=False, sort=True)["value"].sum()


def _add_holdout(
    summary: pd.DataFrame,
    days: pd.DataFrame,
    calibration_day: pd.Timestamp,
    observation_end: date | datetime | str,
    unit: pd.Timedelta,
    customer_col: str,
) -> pd.DataFrame:
    import pandas as pd

    observation_day = pd.Timestamp(observation_end).normalize()
    if observation_day <= calibration_day:
        raise ValueError(
            f"observation_end {observation_day:%Y-%m-%d} must be after the calibration end "
            f"{calibration_day:%Y-%m-%d}"
        )
    holdout = days[(days["day"] > calibration_day) & (days["day"] <= observation_day)]
    per_customer = holdout.groupby(customer_col)
    summary = summary.copy()
    summary["frequency_holdout"] = (
        per_customer["day"].count().reindex(summary.index).fillna(0).astype(float)
    )
    summary["monetary_value_holdout"] = (
        per_customer["value"].mean().reindex(summary.index).fillna(0.0)
    )
    summary["duration_holdout"] = (observation_day - calibration_day) / unit
    return summary
