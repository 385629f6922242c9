# crmsync developer commands. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_WORKERS ?= 2

.DEFAULT_GOAL := help

help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-10s %s\n", $$1, $$2}'

# The sandbox is its own distribution (crmsync_sandbox/pyproject.toml) behind the `sandbox` extra,
# which `dev` includes: installed editable in the same pip call, it satisfies that requirement.
$(STAMP): pyproject.toml crmsync_sandbox/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/pip install --quiet -e ./crmsync_sandbox -e '.[dev]'
	touch $(STAMP)

dev: $(STAMP) ## Create .venv and install crmsync, the CRM sandbox and the dev tools

lint: $(STAMP) ## ruff (lint + format check), mypy strict on app/ and crmsync_sandbox/, import layering
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: $(STAMP) ## Format and auto-fix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: $(STAMP) ## Run the whole suite (PostgreSQL too when CRMSYNC_TEST_DATABASE_URL is set)
	$(BIN)/pytest -n $(PYTEST_WORKERS) -q

test-pg: $(STAMP) ## Run the suite on a throw-away PostgreSQL database at 127.0.0.1:5432
	bash .ci/with-postgres $(BIN)/pytest -n $(PYTEST_WORKERS) -q

migrate: $(STAMP) ## Upgrade the database (CRMSYNC_DATABASE_URL) to the latest schema
	$(BIN)/crmsync db upgrade

serve: $(STAMP) ## Serve the API on 127.0.0.1:8000 (OpenAPI at /docs)
	$(BIN)/crmsync serve

sandbox: $(STAMP) ## Start the local Salesforce + HubSpot emulator on port 8440
	$(BIN)/crmsync sandbox --port 8440 --seed 42 --accounts 500

demo: $(STAMP) ## End to end on SQLite under ./var: sandbox, migrate, sync, summary
	$(BIN)/crmsync demo

bench: $(STAMP) ## Benchmarks (python -m bench --only NAME for one): pull vs the floor, push, recompute, webhooks, partitioned backfill 1 vs 2 workers
	$(BIN)/python -m bench

clean: ## Remove the venv, caches and ./var
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache

.PHONY: help dev lint fmt test test-pg migrate serve sandbox demo bench clean
