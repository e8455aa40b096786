# The one entry point for humans and CI.  `make demo` and `make test` do all set-up themselves.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export RAY_USAGE_STATS_ENABLED ?= 0

.PHONY: setup browser demo test test-scale test-unit test-integration test-thorough test-e2e mutation bench report eval stop clean

# The Compose specification's JSON schema for tests/unit/test_compose_file.py (no Docker engine
# here): the copy inside the docker-compose 1.29.2 wheel, downloaded, never installed (its pins
# clash with ours). The wheel lives in the venv, so `make clean` removes it.
COMPOSE_SPEC_WHEEL := docker-compose==1.29.2

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt -e '.[test]'
	$(PIP) download -q --no-deps --dest $(VENV)/share/compose-spec $(COMPOSE_SPEC_WHEEL)
	touch $(STAMP)

setup: $(STAMP)

# ruff over the repo, mypy strict on the pure core; both configured in pyproject.toml
# (docs/testing.md, "Lint and types").
.PHONY: lint
lint: setup
	$(PY) -m ruff check .
	$(PY) -m mypy

# Headless Chromium for the browser tests (Debian packages; playwright never downloads one).
# Installs them as root; otherwise says what to install, and fails under CI=true.
browser:
	@./scripts/ensure_browser.sh

# `python -m lookalike.cli` is the `lookalike` console script (pyproject [project.scripts]),
# run as a module: the same code, whatever is on PATH.
demo: setup
	$(PY) -m lookalike.cli demo

# `make test`: the whole proof but the slow proofs kept whole (marker `scale`), which
# `make test-scale` runs: the cluster of three nodes with autoscaling onto a new node and back
# (tests/e2e/test_multi_node.py) and the soak (tests/e2e/test_soak.py). .ci/run runs both.
test: setup browser
	PY=$(PY) ./scripts/test_tiers.sh

test-scale: setup
	$(PY) -m pytest -q -m scale

# The unit tier's promise: under a minute in all (tests/budget.py fails the run past it, and
# says the machine's load). `make test-unit UNIT_BUDGET_S=` reports without a limit.
UNIT_BUDGET_S ?= 60
test-unit: setup
	$(PY) -m pytest -q tests/unit --durations=10 -p tests.budget $(if $(UNIT_BUDGET_S),--budget-s $(UNIT_BUDGET_S))

test-integration: setup
	$(PY) -m pytest -q tests/integration

# The property tests (ranking, pages) with 1000 examples each instead of make test's 100.
test-thorough: setup
	$(PY) -m pytest -q tests/unit --hypothesis-profile=thorough -k "propert or pages"

test-e2e: setup browser
	$(PY) -m pytest -q -m "not scale" tests/e2e

# Mutation testing of the ranking, the query understanding, variants and the API models
# (docs/testing.md, "Mutation testing"): not part of `make test`. mutmut mutates a copy of the
# package under mutants/ and runs, per mutant, the unit tests that reach the mutated function
# ([tool.mutmut] in pyproject.toml); the report fails above 20% surviving. One child, niced: on a
# 2-core box shared with other work it takes hours. A fresh copy each time, so the report is the
# current code's.
mutation: setup
	rm -rf mutants
	nice -n 15 $(VENV)/bin/mutmut run --max-children 1
	$(PY) scripts/mutation_report.py

bench: setup
	$(PY) bench/p1_p2_serve.py

report: setup
	$(PY) -m bench.report
	$(MAKE) eval

# Retrieval quality (docs/search-quality.md): the demo catalogue and the Fashion-MNIST test split.
eval: setup
	$(PY) -m lookalike.eval --catalogue demo --products 2000 --out bench/results/eval_demo.json
	$(PY) -m lookalike.eval --catalogue test --products 1000 --out bench/results/eval_test.json

stop:
	-$(PY) -m lookalike.cli stop

clean: stop
	rm -rf $(VENV) artifacts bench/results
