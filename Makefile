# One entry point per task; every target sets up .venv itself, so a fresh clone
# needs nothing but python3.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test lint pytest demo bench fixtures fmt clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: lint pytest

lint: $(STAMP)
	$(BIN)/ruff check p3log tests bench fixtures
	$(BIN)/ruff format --check p3log tests bench fixtures
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

demo: $(STAMP)
	$(BIN)/p3log demo

bench: $(STAMP)
	$(BIN)/python bench/store.py
	$(BIN)/python bench/sim.py
	$(BIN)/python bench/tap.py

# Re-record fixtures/sessions/ from the POS scripts in fixtures/pos/.
fixtures: $(STAMP)
	$(BIN)/python fixtures/record.py

fmt: $(STAMP)
	$(BIN)/ruff check --fix p3log tests bench fixtures
	$(BIN)/ruff format p3log tests bench fixtures

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
