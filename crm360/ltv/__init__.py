"""Customer value and churn models: BG/NBD + Gamma-Gamma LTV (lifetimes) and a subscription
cancellation model (scikit-learn), behind the marts in `dbt_project/models/marts/ltv/` and
`.../churn/`. See docs/ltv.md."""
