# The two commands of the README, and a few for developers. Every target installs what it
# needs first (scripts/bootstrap: a project-local .venv from the lock, skipped when current).
.PHONY: demo test lint format bootstrap clean bench bench-compare bench-ingest bench-dbt-tasks

VENV := .venv/bin
# people per benchmark size: make bench SIZES=10000,100000 for fewer
SIZES ?= 10000,100000,1000000

bootstrap:
	@scripts/bootstrap

demo: bootstrap
	$(VENV)/crm360 demo

# one worker per core; a test module's tests stay on one worker (they share its fixtures)
test: bootstrap
	$(VENV)/python -m pytest -n auto --dist loadfile

# The benchmark (docs/benchmark.md)
bench: bootstrap
	$(VENV)/python -m bench.run --sizes $(SIZES)

# the two latest results side by side, or two given ones: make bench-compare RESULTS="A.json B.json"
bench-compare: bootstrap
	$(VENV)/python -m bench.compare $(RESULTS)

# dbt as one task per layer against one task per dbt node (docs/airflow.md)
bench-dbt-tasks: bootstrap
	$(VENV)/python -m bench.dbt_tasks --customers $(or $(CUSTOMERS),5000)

bench-ingest: bootstrap
	$(VENV)/python bench/ingest.py --customers $(or $(CUSTOMERS),100000)

lint: bootstrap
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .

format: bootstrap
	$(VENV)/ruff format .
	$(VENV)/ruff check --fix .

clean:
	rm -rf data warehouse exports .airflow dbt_project/target dbt_project/logs expectations/uncommitted
