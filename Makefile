# The two commands that matter: `make run` and `make test`.
SHELL := /bin/bash
UV ?= uv
RUN := $(UV) run --frozen
SERVICES := billing_api payment_gateway access_api notifier etl

# Everything started from here is a developer's: the repository's development secrets and the
# sandbox provider. Every process refuses those outside CINEMA_ENV=development (README:
# Production checklist), so this file says development once, for every target.
export CINEMA_ENV := development

.PHONY: help install prepare migrate demo-data run test test-faults lint format typecheck imports ci clean
.PHONY: demo clients
.PHONY: bench bench-access bench-pipeline bench-renewals bench-checkout bench-etl

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

install:  ## create .venv from uv.lock
	@command -v $(UV) >/dev/null || pip install --quiet uv
	$(UV) sync --frozen

prepare: install  ## create the database if missing; start PostgreSQL/RabbitMQ with docker compose if absent
	$(RUN) cinema prepare --start-services

migrate: prepare  ## apply every service's migrations; declare the consumers' queues
	@for service in $(SERVICES); do $(RUN) alembic -n $$service upgrade head || exit 1; done
	@for consumer in billing access notifier; do $(RUN) cinema $$consumer declare-queues || exit 1; done

demo-data: migrate  ## load the demo catalog and the movie admin's demo database (idempotent)
	$(RUN) cinema billing seed-demo
	$(RUN) cinema etl seed-source

run: demo-data  ## start the whole suite (sandbox payments) on localhost
	@echo "billing-api   http://127.0.0.1:8000/docs"
	@echo "gateway-api   http://127.0.0.1:8001/docs"
	@echo "access-api    http://127.0.0.1:8002/docs"
	@echo "notifier      http://127.0.0.1:8003/docs"
	$(RUN) honcho start -f Procfile

demo: install  ## the purchase story against the suite `make run` started (run it first)
	$(RUN) python -m demo

clients: install  ## generate the API clients from the running suite's OpenAPI into clients/
	$(RUN) python -m demo.clients clients

test: install  ## the test suite, against the real PostgreSQL and RabbitMQ
	$(RUN) pytest --ignore=tests/faults

test-faults: install  ## faults injected into the running suite: nothing lost, nothing doubled
	$(RUN) pytest tests/faults

lint:  ## ruff lint and format check
	$(RUN) ruff check .
	$(RUN) ruff format --check .

format:  ## apply ruff's formatting and fixes
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

typecheck:  ## mypy --strict
	$(RUN) mypy

imports:  ## services never import each other; routes above services above models
	$(RUN) lint-imports

ci: install lint typecheck imports test  ## what CI runs

# Benchmarks (bench/, see BENCHMARKS.md): each prints a table and merges its section into
# bench/results.json. `bench` runs them all: add each new bench/<name>.py to BENCHMARKS.
BENCHMARKS := access pipeline renewals checkout etl

bench: install  ## every benchmark (loopback, bounded; BENCH_SECONDS per run)
	@for b in $(BENCHMARKS); do $(RUN) python -m bench.$$b || exit 1; done

bench-access: install  ## the access check against a bare endpoint (wrk)
	$(RUN) python -m bench.access

bench-pipeline: install  ## sandbox payments until the access API allows them
	$(RUN) python -m bench.pipeline

bench-renewals: install  ## 20,000 due subscriptions renewed by billing-worker, 1 and 2 workers
	$(RUN) python -m bench.renewals

bench-checkout: install  ## POST /api/v1/subscriptions latency (wrk)
	$(RUN) python -m bench.checkout

bench-etl: install  ## one ETL pass over 20,000 source movies
	$(RUN) python -m bench.etl

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache .hypothesis
