# Two commands: `make run` and `make test`. Everything else is a helper for them.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 3
CONSUMER_WORKERS ?= 2

.PHONY: run serve consume test test-browser browser-deps lint fuzz bench bench-import bench-email bench-read-locks bench-request bench-request-profile bench-send bench-insights venv dev-venv clean

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
	@echo "Serving on http://$(HOST):$(PORT) with one queue consumer - sign in with one of the demo logins above (Ctrl-C stops both)."
	@# The web server and one queue consumer (background jobs, mail and ERP hand-overs, the periodic work);
	@# when either stops (Ctrl-C, or a failure), the other is stopped too.
	@bash -c 'trap "kill $$(jobs -p) 2>/dev/null; wait" EXIT; \
	  $(BIN)/flask --app wsgi crm queue consume --workers $(CONSUMER_WORKERS) & \
	  $(BIN)/gunicorn --bind $(HOST):$(PORT) --workers $(WORKERS) --config crm/gunicorn_conf.py wsgi:app & \
	  wait -n'

# The web server alone (consumers run elsewhere: `flask --app wsgi crm queue consume`, see README).
serve: venv
	$(BIN)/gunicorn --bind $(HOST):$(PORT) --workers $(WORKERS) --config crm/gunicorn_conf.py wsgi:app

# A queue consumer alone (CONSUMER_ARGS="--no-periodic" for every consumer but one).
consume: venv
	$(BIN)/flask --app wsgi crm queue consume --workers $(CONSUMER_WORKERS) $(CONSUMER_ARGS)

test: dev-venv
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# The browser suite (tests_browser/, docs/testing.md): Playwright (pinned in requirements-dev.txt, no browser
# download) drives Debian's chromium; axe-core comes from npm at the version package-lock.json pins.
# browser-deps installs chromium with apt-get when /usr/bin/chromium is missing (needs root, as in CI).
CHROMIUM ?= /usr/bin/chromium
AXE_DIR := tests_browser/axe
AXE_JS := $(AXE_DIR)/node_modules/axe-core/axe.min.js

$(AXE_JS): $(AXE_DIR)/package.json $(AXE_DIR)/package-lock.json
	npm ci --prefix $(AXE_DIR) --no-audit --no-fund --loglevel=error
	touch $@

browser-deps: dev-venv $(AXE_JS)
	@if [ ! -x "$(CHROMIUM)" ]; then \
	  echo "installing Debian's chromium (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi
	@test -x "$(CHROMIUM)" || { echo "FAIL: no browser at $(CHROMIUM)" >&2; exit 1; }

test-browser: browser-deps
	CRM_CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest -q -p no:cacheprovider tests_browser $(PYTEST_ARGS)

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

# A timeline request under gunicorn against Flask's hello world, same settings, interleaved (issue 15)
bench-request: dev-venv
	$(BIN)/python -m benchmarks.request_path $(BENCH_ARGS)

# Where a timeline request's CPU goes (parts taken away one by one, and a grouped profile).
bench-request-profile: dev-venv
	$(BIN)/python -m benchmarks.request_profile $(BENCH_ARGS)

# Campaign send of 50,000 recipients through the queue (issue 13): request time and background completion
bench-send: dev-venv
	$(BIN)/python -m benchmarks.campaign_send $(BENCH_ARGS)

bench-read-locks: dev-venv
	$(BIN)/python -m benchmarks.read_locks $(BENCH_ARGS)

# Insights (issue 12): 1M interactions / 50k HCPs, each aggregation timed; SQLite by default,
# BENCH_ARGS="--database-url postgresql+psycopg://..." for PostgreSQL
bench-insights: dev-venv
	$(BIN)/python -m benchmarks.insights $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache $(AXE_DIR)/node_modules
