# The two commands: `make run` (demo on the embedded default) and `make test` (the whole suite).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/interorg
PYTEST_ARGS ?=
# Two processes for the suite; the tests of real Celery workers share one Redis database and
# brokers, so they run on their own afterwards.
XDIST ?= -n 2
BENCH_SMOKE := --recipients 60 --incremental-sizes 20,40 --changes 5 \
	--fanout-requestors 3 --fanout-entries 300 --ldap-entries 200 --ad-entries 30,60 \
	--hub-organizations 4 --hub-recipients 20 --storm-changes 2 --workers 1

.PHONY: install run test test-tools test-postgres test-sqlite test-property mutate mutate-quick lint \
	compose-check demo flower bench clean mutate-clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@bin/ensure-python "$(PYTHON)" "$(VENV)"
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	@bin/ensure-ldap "$(PY)" || echo "Note: LDAP directories stay unavailable until python-ldap installs."
	@touch $@

demo: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo --if-empty

# The console, a Celery worker, beat and the SMTP receiver (Procfile, run by bin/run-procfile,
# which shows the address and login in a box once the console answers); the demo organizations
# sync by themselves on their schedules. Ctrl-C stops all four, and make with them. A .env file is
# not read: it is for docker-compose; export variables in the shell to change this setup.
run: demo
	@INTERORG_DISPATCH_TASKS=true INTERORG_WEB_ADDRESS=$(HOST):$(PORT) $(PY) bin/run-procfile \
		--url "http://$(HOST):$(PORT)/" --login "$$($(PY) manage.py seed_demo --login-only)" \
		--login "The demo organizations sync every minute by themselves: watch their Runs."

# Flower, the Celery monitor, on http://127.0.0.1:5555/ against the same broker as `make run`.
flower: install
	FLOWER_UNAUTHENTICATED_API=true $(VENV)/bin/celery -A interorg_site flower \
		--address=127.0.0.1 --port=5555

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) manage.py makemigrations --check --dry-run

test: lint compose-check test-postgres test-sqlite

# Validate docker-compose.yml offline (docker-compose 1.29 from apt; no Docker engine needed).
compose-check:
	@if ! command -v docker-compose >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing docker-compose to validate docker-compose.yml..."; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends docker-compose >/dev/null; \
	  else \
	    echo "Skipped: docker-compose.yml not validated (apt-get install docker-compose)."; \
	    exit 0; \
	  fi; \
	fi; \
	docker-compose --env-file .env.example -f docker-compose.yml config -q && \
	  echo "docker-compose.yml is valid."

# What the tests start or drive besides Python: swaks, Dovecot, Postfix, slapd and the LDAP clients,
# Chromium, and python-ldap (installed when missing).
test-tools:
	@bin/ensure-test-tools
	@bin/ensure-ldap "$(PY)"
	@bin/ensure-browser

test-postgres: install test-tools
	@bin/wait-for-postgres "$(TEST_DATABASE_URL)"
	DATABASE_URL="$(TEST_DATABASE_URL)" $(VENV)/bin/pytest $(XDIST) --ignore=tests/workers $(PYTEST_ARGS)
	DATABASE_URL="$(TEST_DATABASE_URL)" $(VENV)/bin/pytest tests/workers $(PYTEST_ARGS)
	DATABASE_URL="$(TEST_DATABASE_URL)" $(PY) manage.py bench $(BENCH_SMOKE)

test-sqlite: install test-tools
	DATABASE_URL="sqlite:///$(CURDIR)/var/test.sqlite3" $(VENV)/bin/pytest -m "not postgres" \
		$(XDIST) --ignore=tests/workers $(PYTEST_ARGS)
	DATABASE_URL="sqlite:///$(CURDIR)/var/test.sqlite3" $(VENV)/bin/pytest -m "not postgres" \
		tests/workers $(PYTEST_ARGS)
	DATABASE_URL="sqlite:///$(CURDIR)/var/bench.sqlite3" $(PY) manage.py bench $(BENCH_SMOKE)

# The convergence property test at length (tests/engine/test_convergence_property.py): 200
# random histories by default; INTERORG_PROPERTY_EXAMPLES and INTERORG_PROPERTY_STEPS change it.
test-property: install
	DATABASE_URL="sqlite:///$(CURDIR)/var/property.sqlite3" \
	INTERORG_PROPERTY_EXAMPLES=$${INTERORG_PROPERTY_EXAMPLES:-200} \
		$(VENV)/bin/pytest tests/engine/test_convergence_property.py $(PYTEST_ARGS)

# Mutation testing of the protocol core with mutmut (docs/testing.md; hours on 2 cores, not part
# of `make test`). It goes on from the results in mutants/: only mutants not run yet, or of
# functions changed since, are run again (`make mutate-clean` starts over). The surviving mutants
# are listed at the end; `.venv/bin/mutmut show NAME` prints one.
# Each test session copies one migrated SQLite database (var/mutate.sqlite3) instead of migrating.
MUTATE_ENV := DATABASE_URL="sqlite:///$(CURDIR)/var/mutate.sqlite3" \
	INTERORG_TEST_DB_TEMPLATE="$(CURDIR)/var/mutate.sqlite3"
mutate: install
	rm -f var/mutate.sqlite3
	DATABASE_URL="sqlite:///$(CURDIR)/var/mutate.sqlite3" $(PY) manage.py migrate --noinput -v0
	$(MUTATE_ENV) $(VENV)/bin/mutmut run --max-children 2; \
	$(MUTATE_ENV) $(VENV)/bin/mutmut results

# The same mutants, each first against the few test modules about its source module
# (bin/mutate-quick): a killed mutant in about a second; ARGS="transport/wire.py" for one module.
mutate-quick: install
	rm -f var/mutate.sqlite3
	DATABASE_URL="sqlite:///$(CURDIR)/var/mutate.sqlite3" $(PY) manage.py migrate --noinput -v0
	$(PY) bin/mutate-quick $(ARGS)

mutate-clean:
	rm -rf mutants var/mutate.sqlite3

# The benchmarks at full size (see README, "Performance"); BENCH_ARGS=--json var/bench.json
bench: install
	$(PY) manage.py bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var/*.sqlite3 .pytest_cache .ruff_cache *.egg-info
