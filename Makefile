# Two commands for a newcomer: `make run` and `make test`. Everything they need is installed here,
# once; a second run only checks stamps (and the bot/ hash before training).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON311 ?= $(shell command -v python3.11 || command -v python3)
# Rasa 3.6 needs Python < 3.11; pyenv provides 3.10.13 on every machine of this project.
RASA_PYTHON ?= $(shell pyenv root 2>/dev/null)/versions/3.10.13/bin/python
VENV := .venv
BIN := $(VENV)/bin
RASA_VENV := .venv-rasa
HOST ?= 127.0.0.1
PORT ?= 8000
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export RASA_TELEMETRY_ENABLED := false
export KEFU_ACTIONS_URL ?= http://127.0.0.1:5055/webhook
CHROMIUM := /usr/bin/chromium
CJK_FONT := /usr/share/fonts/truetype/wqy/wqy-microhei.ttc
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help run test lint bot bench clean

help:
	@echo "make run   - install what is missing, load the demo data, start Rasa + actions + gateway on http://$(HOST):$(PORT)"
	@echo "make test  - install what is missing, run lint and every test (SQLite, PostgreSQL, real Rasa)"
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

$(RASA_VENV)/bin/python:
	test -x "$(RASA_PYTHON)" || { echo "Python 3.10 for Rasa not found at $(RASA_PYTHON)" >&2; exit 1; }
	"$(RASA_PYTHON)" -m venv $(RASA_VENV)
	$(RASA_VENV)/bin/python -m pip install -q --upgrade pip wheel

# Rasa server and action server share one venv, frozen in actions/constraints.txt.
$(RASA_VENV)/.installed: actions/constraints.txt | $(RASA_VENV)/bin/python
	$(RASA_VENV)/bin/pip install -q -c actions/constraints.txt 'rasa[jieba]==3.6.21' 'rasa-sdk==3.6.2' \
		pytest pytest-asyncio
	@touch $@

# Debian's chromium for the browser tests: Playwright drives it, it never downloads a browser of its own.
# A CJK font, or the screenshots show boxes instead of Chinese.
BROWSER_PACKAGES := chromium fonts-wqy-microhei
$(CHROMIUM) $(CJK_FONT):
	$(SUDO) apt-get install -y -q --no-install-recommends $(BROWSER_PACKAGES) \
		|| { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q --no-install-recommends $(BROWSER_PACKAGES); }

# Trains only when bot/ changed (kefu bot train compares a hash of bot/ with the model's).
bot: $(VENV)/.installed $(RASA_VENV)/.installed
	$(BIN)/kefu bot userdict
	$(BIN)/kefu bot train

run: $(VENV)/.installed bot
	$(BIN)/kefu db upgrade
	$(BIN)/kefu demo load
	$(BIN)/kefu run --host $(HOST) --port $(PORT)

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy common knowledge connectors gateway

# pytest exits 5 when it collected nothing: a suite that runs no test is a failure here, said plainly.
test: $(VENV)/.installed-st $(CHROMIUM) $(CJK_FONT) bot lint
	cd bot && ../$(RASA_VENV)/bin/rasa data validate --fail-on-warnings --quiet
	cd bot && ../$(RASA_VENV)/bin/rasa test core --stories tests/test_stories.yml --model models/kefu.tar.gz \
		--out ../var/rasa-test-results --fail-on-prediction-errors --quiet
	@$(RASA_VENV)/bin/python -m pytest -q --confcutdir=tests/actions -p no:cacheprovider tests/actions; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: no action tests collected" >&2; exit 1; fi; [ $$rc -eq 0 ] || exit $$rc
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

bench: $(VENV)/.installed
	$(BIN)/python bench/kb_retrieval.py

clean:
	rm -rf var/index var/log bot/models
