"""One row per as_of_date: the subscription cancellation model trained on subscriptions running
at earlier cutoffs, its holdout AUC, Brier score and calibration on a later cutoff (a split in
time), and its coefficients, which customer_churn_risk applies. A run retrains when the latest
earlier model is retrain_after_days old or more, or when the label days, training cutoffs or
library version changed; otherwise it keeps that row's model and evaluation
(trained_as_of_date says which run trained it). Incremental on as_of_date. Without both
cancelled and kept subscriptions to train on, the row says so (is_model_trained false, the reason
in model_not_trained_reason)."""

from crm360.ltv.marts import (
    EVALUATION_TEXT_COLUMNS,
    ChurnSettings,
    as_arrow,
    churn_model_evaluation,
    parse_as_of,
    read_churn_sources,
    reusable_evaluation,
)


def model(dbt, session):
    settings = ChurnSettings(
        as_of=parse_as_of(dbt.config.get("as_of_date")),
        label_days=int(dbt.config.get("label_days")),
        train_snapshots=int(dbt.config.get("train_snapshots")),
        calibration_bins=int(dbt.config.get("calibration_bins")),
        retrain_after_days=int(dbt.config.get("retrain_after_days")),
    )
    if dbt.is_incremental:
        previous = session.sql(f"select * from {dbt.this}").df()
        reused = reusable_evaluation(previous, settings)
        if reused is not None:
            return as_arrow(reused, EVALUATION_TEXT_COLUMNS)
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
    return as_arrow(evaluation, EVALUATION_TEXT_COLUMNS)
