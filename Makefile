# The two commands: `make run` (the hub with demo data on embedded PostgreSQL) and `make test`.
# Each makes its own virtualenv from nothing on a machine with Python 3.11+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test chromium openapi bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	HUB_DEV_MODE=true $(BIN)/hub serve --demo

test: $(STAMP) chromium
	$(BIN)/ruff check src tests bench migrations examples
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest

# The dashboard's browser test drives the system's chromium: Playwright's own browser download is never used.
# Installed quietly where we may (root with apt-get); elsewhere the test skips, and fails under CI=true.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing chromium for the dashboard's browser test (apt-get)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "chromium is not installed: the dashboard's browser test will skip (and fail when CI=true)."; \
	    echo "Install it with: sudo apt-get install chromium (Debian; on other systems put a chromium on PATH)."; \
	  fi; }

openapi: $(STAMP)
	$(BIN)/hub openapi > openapi/openapi.json

bench: $(STAMP)
	$(BIN)/python -m bench all

clean:
	rm -rf $(VENV) .hub
