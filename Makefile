# The two commands: `make run` (the hub with demo data on embedded PostgreSQL) and `make test`.
# Each makes its own virtualenv from nothing on a machine with Python 3.11+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test openapi bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/hub serve --demo

test: $(STAMP)
	$(BIN)/ruff check src tests bench migrations examples
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest

openapi: $(STAMP)
	$(BIN)/hub openapi > openapi/openapi.json

bench: $(STAMP)
	$(BIN)/python -m bench all

clean:
	rm -rf $(VENV) .hub
