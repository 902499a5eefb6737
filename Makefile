# POS error 1000 assistant. `make run` and `make test` work on a fresh machine:
# they create .venv, install, train when the model is stale, then run / check.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV    := .venv
BIN     := $(VENV)/bin
MODEL   := models/pos1000.tar.gz
RESULTS := results

# Local defaults; a deployment sets these in the environment instead.
export ACTION_ENDPOINT_URL ?= http://127.0.0.1:$(or $(ACTIONS_PORT),5055)/webhook
export TRACKER_STORE_URL   ?= sqlite:///rasa_tracker.db
# Where Rasa's event broker (endpoints.yml) and the action server reach the desk.
export DESK_URL            ?= http://127.0.0.1:8080
export TF_CPP_MIN_LOG_LEVEL ?= 2
# TensorFlow sizes its thread pools to the machine; two cores want no oversubscription.
export TF_INTER_OP_PARALLELISM_THREADS ?= 2
export TF_INTRA_OP_PARALLELISM_THREADS ?= 2
export SQLALCHEMY_SILENCE_UBER_WARNING := 1
export RASA_TELEMETRY_ENABLED := false

TRAIN_INPUTS := config.yml $(wildcard domain/*.yml) $(wildcard data/*/*.yml) \
                $(wildcard data/jieba/*) $(wildcard nlu_components/*.py) $(wildcard policies/*.py)

.PHONY: help install system-packages train run status shell actions test test-unit test-fast test-stories test-nlu validate lint clean test-slow bench

help:
	@echo "make run    - install, train if stale, start Rasa + action server + support desk, print the URLs"
	@echo "make shell  - chat with the assistant in this terminal"
	@echo "make train  - train the model (models/pos1000.tar.gz)"
	@echo "make test   - install, train, then every check (validate, lint, pytest, stories, held-out NLU)"
	@echo "make test-fast - the unit tests only (no model, no server processes), under a minute"
	@echo "make bench  - our stack vs the stock Rasa starter bot under load; results/bench/"

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || "$$(scripts/find_python310.sh)" -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip wheel
	$(BIN)/pip install --quiet -e ".[test]"
	@touch $@

# The website widget (rasa-webchat) from npm, served by the desk at /chat.
web/node_modules/.installed: web/package.json web/package-lock.json
	@command -v npm >/dev/null || { echo "npm is missing: bash scripts/system_packages.sh installs it (with the test servers)" >&2; exit 1; }
	cd web && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

install: $(VENV)/.installed web/node_modules/.installed

.env:
	@$(BIN)/python scripts/ensure_env.py .env

$(MODEL): $(VENV)/.installed $(TRAIN_INPUTS)
	@mkdir -p models $(RESULTS)
	@start=$$(date +%s); \
	$(BIN)/python -m rasa_server train --domain domain --data data --config config.yml \
	  --out models --fixed-model-name pos1000 --force; \
	status=$$?; echo "training took $$(( $$(date +%s) - start )) s" | tee $(RESULTS)/train_time.txt; \
	exit $$status

train: $(MODEL)

# ruff (pyflakes, pycodestyle, bugbear; the format check) and mypy, configured in pyproject.toml.
lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

validate: $(VENV)/.installed
	$(BIN)/python scripts/validate_data.py --domain domain --data data --config config.yml

run: $(MODEL) .env web/node_modules/.installed
	@echo "Starting Rasa (http://127.0.0.1:$${RASA_PORT:-5005}), the action server (:$${ACTIONS_PORT:-5055}) and the support desk (http://127.0.0.1:$${DESK_PORT:-8080}) under supervisord."
	@echo "Merchant help page with the chat widget: http://127.0.0.1:$${DESK_PORT:-8080}/chat (?lang=en)"
	@echo "Agent console: http://127.0.0.1:$${DESK_PORT:-8080}/console"
	@echo "Chat in a terminal: make shell; or POST to the REST channel:"
	@echo "  curl -s http://127.0.0.1:$${RASA_PORT:-5005}/webhooks/rest/webhook -d '{\"sender\": \"me\", \"message\": \"pos机报1000咋整\"}'"
	@echo "Rasa's HTTP API needs RASA_AUTH_TOKEN, the desk API DESK_API_TOKEN (both in .env)."
	@echo "A process that dies is restarted; make status lists them; Ctrl-C stops all three."
	@set -a; . ./.env; set +a; exec $(BIN)/python scripts/supervise.py run

# Which of make run's processes run, since when (supervisord).
status:
	@$(BIN)/python scripts/supervise.py status

shell: $(MODEL) .env
	@set -a; . ./.env; set +a; \
	$(BIN)/python -m support_desk >/tmp/pos1000-desk.log 2>&1 & desk=$$!; \
	$(BIN)/python -m actions.server --actions actions --port 5055 >/tmp/pos1000-actions.log 2>&1 & actions=$$!; \
	trap "kill $$desk $$actions" EXIT; \
	$(BIN)/python -m rasa_server shell --model $(MODEL) --endpoints endpoints.yml

# Debian packages the checks start themselves (PostgreSQL, Redis, nginx, chromium, a CJK
# font); installed when missing (root or password-less sudo), else a clear message.
system-packages:
	@bash scripts/system_packages.sh

test: system-packages validate lint test-unit test-stories test-nlu

test-unit: $(MODEL) web/node_modules/.installed
	$(BIN)/pytest -q

# The unit tests: nothing that starts a server process or needs the trained model (those
# carry the `process` marker, tests/harness/fixtures.py), so no training first.
test-fast: $(VENV)/.installed web/node_modules/.installed
	$(BIN)/pytest -q -m "not slow and not process"

test-stories: $(MODEL)
	$(BIN)/python -m rasa_server test core --model $(MODEL) --stories tests/stories \
	  --fail-on-prediction-errors --out $(RESULTS)/stories

test-nlu: $(MODEL)
	$(BIN)/python scripts/nlu_heldout.py --model $(MODEL) --out $(RESULTS)/nlu --min-f1 0.90

# Trains (timed), starts the stack with production settings and the stock starter bot,
# drives 1/8/32 merchants and a scale-out run; table + results/bench/bench.{json,png}.
bench: $(VENV)/.installed
	@bash scripts/system_packages.sh --no-browser
	$(BIN)/python -m bench

clean:
	rm -rf models $(RESULTS) .pytest_cache

# Load and soak (tests/slow/): 50 merchants for 2 minutes through whole conversations
# against real processes on 127.0.0.1; the RSS curve goes to results/soak_rss.json.
test-slow: $(MODEL)
	$(BIN)/pytest -q -s -m slow tests/slow
