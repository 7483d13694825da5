# Two commands for a newcomer: `make run` and `make test`. Everything they need is installed here,
# once; a second run only checks stamps.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON311 ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: help run test lint bench clean

help:
	@echo "make run   - install what is missing, load the demo knowledge base, serve on http://$(HOST):$(PORT)"
	@echo "make test  - install what is missing, run lint and the whole test suite (SQLite and PostgreSQL)"
	@echo "make bench - retrieval benchmark (JSON)"

$(BIN)/python:
	$(PYTHON311) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The app and its tools; re-run only when the project's dependencies change.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

# The sentence-transformers backend (torch pinned to the CPU wheel) is needed by the tests, not by `make run`.
$(VENV)/.installed-st: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[dev,st]'
	@touch $@

run: $(VENV)/.installed
	$(BIN)/kefu db upgrade
	$(BIN)/kefu demo load
	$(BIN)/kefu serve --host $(HOST) --port $(PORT)

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy common knowledge connectors gateway

# pytest exits 5 when it collected nothing: a suite that runs no test is a failure here, said plainly.
test: $(VENV)/.installed-st lint
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

bench: $(VENV)/.installed
	$(BIN)/python bench/kb_retrieval.py

clean:
	rm -rf var/index var/test-*
