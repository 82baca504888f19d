"""One row per customer of customer_360: order history, BG/NBD and Gamma-Gamma predictions with
the parameters in ltv_model_fits for this as_of_date (no second fit), and the discounted revenue
and gross-margin LTV over the horizon. A buyer the models cannot predict (a model not fitted,
a figure not finite) gets the historical LTV, with the reason in ltv_fallback_reason."""

from crm360.ltv.marts import LTV_TEXT_COLUMNS, LtvSettings, as_arrow, customer_ltv, parse_as_of


def model(dbt, session):
    settings = LtvSettings(
        as_of=parse_as_of(dbt.config.get("as_of_date")),
        time_unit_days=float(dbt.config.get("time_unit_days")),
        horizon_months=int(dbt.config.get("horizon_months")),
        annual_discount_rate=float(dbt.config.get("annual_discount_rate")),
        penalizer_coef=float(dbt.config.get("penalizer_coef")),
    )
    # the order history and the summary are computed in DuckDB; pandas holds only the rows of
    # the customers (one each), never the orders
    return as_arrow(
        customer_ltv(
            session,
            customers=dbt.ref("customer_360"),
            orders=dbt.ref("int_orders__priced"),
            fits=dbt.ref("ltv_model_fits").df(),
            settings=settings,
        ),
        LTV_TEXT_COLUMNS,
    )
