# Two commands: `make run` and `make test`. Everything else is a helper for them.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 3

.PHONY: run test lint fuzz bench bench-import bench-email bench-read-locks bench-insights venv dev-venv clean

$(BIN)/.installed: requirements.txt
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(BIN)/.dev-installed: $(BIN)/.installed requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

venv: $(BIN)/.installed
dev-venv: $(BIN)/.dev-installed

run: venv
	mkdir -p instance
	$(BIN)/flask --app wsgi db upgrade
	$(BIN)/flask --app wsgi crm demo
	@echo "Serving on http://$(HOST):$(PORT) - sign in with one of the demo logins above (Ctrl-C stops)."
	$(BIN)/gunicorn --bind $(HOST):$(PORT) --workers $(WORKERS) --config crm/gunicorn_conf.py wsgi:app

test: dev-venv
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: dev-venv
	$(BIN)/ruff check .
	$(BIN)/mypy

# schemathesis against a throwaway database with the demo data (FUZZ_ARGS="--database-url postgresql+psycopg://...")
fuzz: dev-venv
	$(BIN)/python -m tests.schemathesis_run $(FUZZ_ARGS)

bench: dev-venv
	$(BIN)/python -m benchmarks.timeline $(BENCH_ARGS)

# NPPES import: 100k and 1M rows on SQLite and PostgreSQL (BENCH_IMPORT_ARGS="--rows 100000 --db sqlite" to narrow)
bench-import: dev-venv
	$(BIN)/python -m benchmarks.nppes_import --write-doc $(BENCH_IMPORT_ARGS)

# Email events and campaign sends (issue 4): SQLite by default; BENCH_ARGS="--database-url postgresql+psycopg://..."
bench-email: dev-venv
	$(BIN)/python -m benchmarks.email_events $(BENCH_ARGS)

bench-read-locks: dev-venv
	$(BIN)/python -m benchmarks.read_locks $(BENCH_ARGS)

# Insights (issue 12): 1M interactions / 50k HCPs, each aggregation timed; SQLite by default,
# BENCH_ARGS="--database-url postgresql+psycopg://..." for PostgreSQL
bench-insights: dev-venv
	$(BIN)/python -m benchmarks.insights $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
