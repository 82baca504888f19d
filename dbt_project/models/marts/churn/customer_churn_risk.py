"""One row per customer of customer_360: the churn probability and band, from the subscription
model (customers with an active subscription; coefficients from churn_model_evaluation for this
as_of_date) or from BG/NBD (1 - probability alive, other buyers), with the features used; a buyer
without a BG/NBD model gets the recency rule (days since the last order / churned_days)."""

from crm360.ltv.churn import ChurnModel
from crm360.ltv.marts import (
    ChurnSettings,
    as_arrow,
    customer_churn_risk,
    evaluation_for,
    parse_as_of,
    read_churn_sources,
)


def model(dbt, session):
    settings = ChurnSettings(
        as_of=parse_as_of(dbt.config.get("as_of_date")),
        label_days=int(dbt.config.get("label_days")),
        band_low=float(dbt.config.get("band_low")),
        band_medium=float(dbt.config.get("band_medium")),
        churned_days=int(dbt.config.get("churned_days")),
    )
    evaluation = evaluation_for(dbt.ref("churn_model_evaluation").df(), settings.as_of)
    sources = read_churn_sources(
        session,
        linked=dbt.ref("int_customers__linked"),
        subscriptions=dbt.ref("stg_shop__subscriptions"),
        orders=dbt.ref("int_orders__priced"),
        web_events=dbt.ref("stg_web__events"),
        email_events=dbt.ref("stg_email__events"),
        tickets=dbt.ref("stg_support__tickets"),
    )
    risk = customer_churn_risk(
        session,
        customers=dbt.ref("customer_360"),
        ltv=dbt.ref("customer_ltv"),
        sources=sources,
        model=ChurnModel.from_json(evaluation["model_coefficients"])
        if evaluation["is_model_trained"]
        else None,
        settings=settings,
    )
    return as_arrow(risk, ("customer_id", "churn_model", "churn_band"))
