"""Demo data: fake exports of the source systems, realistic enough to exercise the pipeline."""
