"""One row per as_of_date: the subscription cancellation model trained on subscriptions running
at earlier cutoffs, its holdout AUC, Brier score and calibration on a later cutoff (a split in
time), and its coefficients, which customer_churn_risk applies. Incremental on as_of_date."""

from crm360.ltv.marts import (
    ChurnSettings,
    as_arrow,
    churn_model_evaluation,
    parse_as_of,
    read_churn_sources,
)


def model(dbt, session):
    settings = ChurnSettings(
        as_of=parse_as_of(dbt.config.get("as_of_date")),
        label_days=int(dbt.config.get("label_days")),
        train_snapshots=int(dbt.config.get("train_snapshots")),
        calibration_bins=int(dbt.config.get("calibration_bins")),
    )
    sources = read_churn_sources(
        session,
        linked=dbt.ref("int_customers__linked"),
        subscriptions=dbt.ref("stg_shop__subscriptions"),
        orders=dbt.ref("int_orders__priced"),
        web_events=dbt.ref("stg_web__events"),
        email_events=dbt.ref("stg_email__events"),
        tickets=dbt.ref("stg_support__tickets"),
    )
    evaluation, _ = churn_model_evaluation(sources, settings)
    return as_arrow(evaluation)
