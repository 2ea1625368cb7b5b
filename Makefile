# The two quick-start commands, each self-contained on a fresh machine: `make demo` and `make test`.
# TORCH picks the PyTorch build (pip arguments allowed); see README "Quick start" for CPU-only and GPU wheels.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: install demo test lint clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/rece-bench demo

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check rece_bench tests
	$(BIN)/ruff format --check rece_bench tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
