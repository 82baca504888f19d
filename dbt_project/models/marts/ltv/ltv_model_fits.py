"""One row per model (bg_nbd, gamma_gamma) per as_of_date: the BG/NBD and Gamma-Gamma fits on
the completed orders before as_of_date, with their diagnostics. A run refits when the latest
earlier fits are refit_after_days old or more, when the number of buyers has changed by more
than refit_after_growth, or when the fit's settings changed; otherwise it keeps their
parameters (fitted_as_of_date says which run fitted them). Incremental on model_fit_id: earlier
as_of dates keep their rows, a rerun replaces its own. A model the data cannot give (too few
buyers, no repeat buyer) keeps its row with is_fitted false and the reason in fit_note."""

from crm360.ltv.marts import (
    FIT_TEXT_COLUMNS,
    LtvSettings,
    as_arrow,
    buyer_count_sql,
    model_fits,
    parse_as_of,
    reusable_fits,
)


def model(dbt, session):
    settings = LtvSettings(
        as_of=parse_as_of(dbt.config.get("as_of_date")),
        time_unit_days=float(dbt.config.get("time_unit_days")),
        horizon_months=int(dbt.config.get("horizon_months")),
        annual_discount_rate=float(dbt.config.get("annual_discount_rate")),
        penalizer_coef=float(dbt.config.get("penalizer_coef")),
        refit_after_days=int(dbt.config.get("refit_after_days")),
        refit_after_growth=float(dbt.config.get("refit_after_growth")),
    )
    orders = dbt.ref("int_orders__priced")
    if dbt.is_incremental:
        previous = session.sql(f"select * from {dbt.this}").df()
        (buyers,) = session.sql(buyer_count_sql(orders.sql_query(), settings.as_of)).fetchall()[0]
        reused = reusable_fits(previous, buyers, settings)
        if reused is not None:
            return as_arrow(reused, FIT_TEXT_COLUMNS)
    return as_arrow(model_fits(session, orders, settings), FIT_TEXT_COLUMNS)
