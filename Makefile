# One entry point per task; every target sets up .venv itself, so a fresh clone
# needs nothing but python3.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test lint pytest demo bench fmt clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: lint pytest

lint: $(STAMP)
	$(BIN)/ruff check p3log tests bench
	$(BIN)/ruff format --check p3log tests bench
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

demo: $(STAMP)
	$(BIN)/p3log demo

bench: $(STAMP)
	$(BIN)/python bench/store.py

fmt: $(STAMP)
	$(BIN)/ruff check --fix p3log tests bench
	$(BIN)/ruff format p3log tests bench

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
