# One entry point per task; every target sets up .venv itself, so a fresh clone
# needs nothing but python3.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test lint pytest demo bench fixtures fmt clean chromium notebooks-strip

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: lint pytest

lint: $(STAMP)
	$(BIN)/ruff check p3log tests bench fixtures notebooks
	$(BIN)/ruff format --check p3log tests bench fixtures notebooks
	$(BIN)/mypy

pytest: $(STAMP) chromium
	$(BIN)/pytest

# Debian's headless Chromium and ChromeDriver for the report's browser test, installed
# only when missing (CI runs as root; elsewhere through sudo).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }

demo: $(STAMP)
	$(BIN)/p3log demo

bench: $(STAMP)
	$(BIN)/python bench/store.py
	$(BIN)/python bench/sim.py
	$(BIN)/python bench/issue13.py
	$(BIN)/python bench/projections.py --transactions 100000
	$(BIN)/python bench/replay.py

# Re-record fixtures/sessions/ from the POS scripts in fixtures/pos/.
fixtures: $(STAMP)
	$(BIN)/python fixtures/record.py

fmt: $(STAMP)
	$(BIN)/ruff check --fix p3log tests bench fixtures notebooks
	$(BIN)/ruff format p3log tests bench fixtures notebooks

# Clear the outputs of notebooks/*.ipynb before committing them (tests/test_notebooks.py
# fails on a notebook that has any).
notebooks-strip: $(STAMP)
	$(BIN)/python notebooks/strip.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
