"""One row per model (bg_nbd, gamma_gamma) per as_of_date: the BG/NBD and Gamma-Gamma fits on
the completed orders before as_of_date, refitted on every run, with their diagnostics.
Incremental on model_fit_id: earlier as_of dates keep their rows, a rerun replaces its own."""

from crm360.ltv.marts import ORDER_COLUMNS, LtvSettings, as_arrow, model_fits, parse_as_of


def model(dbt, session):
    settings = LtvSettings(
        as_of=parse_as_of(dbt.config.get("as_of_date")),
        time_unit_days=float(dbt.config.get("time_unit_days")),
        horizon_months=int(dbt.config.get("horizon_months")),
        annual_discount_rate=float(dbt.config.get("annual_discount_rate")),
        penalizer_coef=float(dbt.config.get("penalizer_coef")),
    )
    orders = dbt.ref("int_orders__priced").project(ORDER_COLUMNS).df()
    return as_arrow(model_fits(orders, settings))
