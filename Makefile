# verifik-admin: `make run` serves the admin on demo data, `make test` runs every test.
# docs/DEVELOPMENT.md explains both, the embedded servers and how to run one test.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RUN_REQUIREMENTS := requirements.txt requirements-run.txt
RUN_STAMP := $(VENV)/.run-$(shell cat $(RUN_REQUIREMENTS) | cksum | cut -d' ' -f1)
STAMP := $(VENV)/.installed-$(shell cat $(RUN_REQUIREMENTS) requirements-dev.txt | cksum | cut -d' ' -f1)
RUN_PORT ?= 8000
SIM_PORT ?= 8765
SIM_COUNT ?= 500
# Empty: the tests start an embedded Postgres / Valkey. CI (.ci/run) names the system servers.
TEST_DATABASE_URL ?=
CELERY_TEST_BROKER_URL ?=

.PHONY: install run test lint format pytest check-servers browser worker beat bench clean

install: $(STAMP)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip

# What running needs (make run); the test and lint tools come on top (make test).
$(RUN_STAMP): $(RUN_REQUIREMENTS) | $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet -r requirements-run.txt
	rm -f $(VENV)/.run-* && touch $@

$(STAMP): requirements-dev.txt $(RUN_STAMP)
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	rm -f $(VENV)/.installed-* && touch $@

# Web server, worker, beat (and the simulator without VERIFIK_API_TOKEN) from Procfile.dev, on
# an embedded Postgres and Valkey unless DATABASE_URL / CELERY_BROKER_URL name servers. Ctrl-C stops all.
run: export DJANGO_DEBUG ?= true
run: $(RUN_STAMP)
	@$(PY) -m verifik_admin.run_local --port $(RUN_PORT) --sim-port $(SIM_PORT) --sim-count $(SIM_COUNT)

test: lint pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# DATABASE_URL, else TEST_DATABASE_URL, else an embedded Postgres (verifik_admin/test_settings.py).
pytest: install check-servers browser
	@url="$${DATABASE_URL:-$(TEST_DATABASE_URL)}"; \
	if [ -n "$$url" ]; then export DATABASE_URL="$$url"; else unset DATABASE_URL; fi; \
	broker="$(CELERY_TEST_BROKER_URL)"; \
	if [ -n "$$broker" ]; then export CELERY_TEST_BROKER_URL="$$broker"; else unset CELERY_TEST_BROKER_URL; fi; \
	$(PY) -m pytest $(PYTEST_ARGS)

# Servers the environment names must answer; unnamed ones are embedded and need nothing.
check-servers: install
	@url="$${DATABASE_URL:-$(TEST_DATABASE_URL)}"; [ -z "$$url" ] || \
	$(PY) -c "import psycopg, sys; psycopg.connect(sys.argv[1].rsplit('/', 1)[0] + '/postgres', connect_timeout=5).close()" "$$url" 2>/dev/null || { \
	  echo "Postgres is not reachable at $$url. Start it (see docs/DEVELOPMENT.md), or unset DATABASE_URL and TEST_DATABASE_URL to use an embedded one."; exit 1; }
	@broker="$(CELERY_TEST_BROKER_URL)"; [ -z "$$broker" ] || \
	$(PY) -c "import redis, sys; redis.Redis.from_url(sys.argv[1], socket_connect_timeout=5).ping()" "$$broker" 2>/dev/null || { \
	  echo "Redis is not reachable at $$broker. Start it, or unset CELERY_TEST_BROKER_URL to use an embedded Valkey."; exit 1; }

# The browser test drives Debian's Chromium; Playwright's own download cannot work offline.
browser:
	@test -x /usr/bin/chromium || { \
	  echo "Installing Debian's chromium for the browser test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

worker: $(RUN_STAMP)
	$(VENV)/bin/celery -A verifik_admin worker --loglevel INFO

beat: $(RUN_STAMP)
	$(VENV)/bin/celery -A verifik_admin beat --loglevel INFO

BENCH_STAMP := $(VENV)/.bench-$(shell cksum < requirements-bench.txt | cut -d' ' -f1)
$(BENCH_STAMP): requirements-bench.txt $(STAMP)
	$(VENV)/bin/pip install --quiet -r requirements-bench.txt
	touch $@

# Benchmarks (docs/BENCHMARKS.md): the system Postgres and Redis on localhost; BENCH_ARGS=--quick for a smoke run.
bench: install $(BENCH_STAMP)
	@pg_isready -q -h 127.0.0.1 || { echo "make bench needs the system Postgres on 127.0.0.1:5432 (docs/DEVELOPMENT.md)."; exit 1; }
	$(PY) -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .data staticfiles test-artifacts .pytest_cache
