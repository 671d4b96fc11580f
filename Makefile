# The two commands: `make run` (demo on the embedded default) and `make test` (the whole suite).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/interorg
PYTEST_ARGS ?=

.PHONY: install run test test-postgres test-sqlite lint demo clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@bin/ensure-python "$(PYTHON)" "$(VENV)"
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	@touch $@

demo: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo --if-empty

run: demo
	@echo
	@echo "  InterOrg Sync console: http://$(HOST):$(PORT)/   (log in as shown above; Ctrl-C stops)"
	@echo
	$(PY) manage.py runserver $(HOST):$(PORT)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) manage.py makemigrations --check --dry-run

test: lint test-postgres test-sqlite

test-postgres: install
	@bin/wait-for-postgres "$(TEST_DATABASE_URL)"
	DATABASE_URL="$(TEST_DATABASE_URL)" $(VENV)/bin/pytest $(PYTEST_ARGS)

test-sqlite: install
	DATABASE_URL="sqlite:///$(CURDIR)/var/test.sqlite3" $(VENV)/bin/pytest -m "not postgres" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) var/*.sqlite3 .pytest_cache .ruff_cache *.egg-info
