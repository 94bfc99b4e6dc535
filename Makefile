# verifik-admin: `make run` serves the admin on demo data, `make test` runs every test.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)
SIM_PORT ?= 8765
SIM_COUNT ?= 500
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/verifik_admin

.PHONY: install run test lint format pytest check-postgres browser worker beat bench clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	rm -f $(VENV)/.installed-* && touch $@

# Without VERIFIK_API_TOKEN the simulator stands in for Verifik, on port $(SIM_PORT).
run: export DJANGO_DEBUG ?= true
run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py create_demo_user
	@set -e; \
	if [ -z "$$VERIFIK_API_TOKEN" ]; then \
	  echo "No VERIFIK_API_TOKEN: serving the Verifik simulator on 127.0.0.1:$(SIM_PORT)"; \
	  $(PY) manage.py verifik_simulator --port $(SIM_PORT) --count $(SIM_COUNT) --token demo-token & SIM=$$!; \
	  trap 'kill $$SIM 2>/dev/null' EXIT INT TERM; \
	  export VERIFIK_API_BASE_URL=http://127.0.0.1:$(SIM_PORT) VERIFIK_API_TOKEN=demo-token; \
	  for i in $$(seq 50); do $(PY) -c "import socket; socket.create_connection(('127.0.0.1', $(SIM_PORT)), 1)" 2>/dev/null && break; sleep 0.2; done; \
	fi; \
	$(PY) manage.py sync_registrations; \
	echo "Admin: http://127.0.0.1:8000/admin/"; \
	$(PY) manage.py runserver 127.0.0.1:8000

test: lint pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

pytest: install check-postgres browser
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} $(PY) -m pytest $(PYTEST_ARGS)

check-postgres:
	@pg_isready -q -d "$${DATABASE_URL:-$(TEST_DATABASE_URL)}" || { \
	  echo "Postgres is not reachable at $${DATABASE_URL:-$(TEST_DATABASE_URL)}."; \
	  echo "Start it (see docs/DEVELOPMENT.md, e.g. 'pg_ctlcluster 15 main start') or set DATABASE_URL."; exit 1; }
	@redis-cli -u "$${CELERY_TEST_BROKER_URL:-redis://127.0.0.1:6379/15}" ping >/dev/null 2>&1 || { \
	  echo "Redis is not reachable; the Celery tests need it. Start redis-server or set CELERY_TEST_BROKER_URL."; exit 1; }

# The browser test drives Debian's Chromium; Playwright's own download cannot work offline.
browser:
	@test -x /usr/bin/chromium || { \
	  echo "Installing Debian's chromium for the browser test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

worker: install
	$(VENV)/bin/celery -A verifik_admin worker --loglevel INFO

beat: install
	$(VENV)/bin/celery -A verifik_admin beat --loglevel INFO

BENCH_STAMP := $(VENV)/.bench-$(shell cksum < requirements-bench.txt | cut -d' ' -f1)
$(BENCH_STAMP): requirements-bench.txt $(STAMP)
	$(VENV)/bin/pip install --quiet -r requirements-bench.txt
	touch $@

# Benchmarks (docs/BENCHMARKS.md): Postgres and Redis on localhost; BENCH_ARGS=--quick for a smoke run.
bench: install check-postgres $(BENCH_STAMP)
	$(PY) -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) db.sqlite3* test-artifacts .pytest_cache
