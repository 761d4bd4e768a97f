# vadmil — every target installs first when needed, so on a fresh clone each is one command.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST := $(PY) -m pytest
RUFF   := $(PY) -m ruff  # works whether ruff is in the venv or in the site packages it inherits

.DEFAULT_GOAL := help
.PHONY: help install test test-slow test-all demo lint format bench bench-fit bench-store bench-gpu clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv and install vadmil editable with the dev tools (idempotent)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

test: install ## the test suite (slow tests excluded; ~minutes on 2 cores)
	$(PYTEST) -q

test-slow: install ## only the tests marked slow
	$(PYTEST) -q -m slow

test-all: install ## every test
	$(PYTEST) -q -m ''

demo: install ## the whole pipeline on generated videos: extract, sweep every head x 2 seeds, report, score
	$(VENV)/bin/vadmil demo

lint: install ## ruff lint + format check
	$(RUFF) check vadmil tests bench
	$(RUFF) format --check vadmil tests bench

format: install ## apply ruff fixes and formatting
	$(RUFF) check --fix vadmil tests bench
	$(RUFF) format vadmil tests bench

bench: install ## benchmarks (results go in docs/benchmarks.md)
	$(PY) bench/bench_train.py
	$(PY) bench/bench_heads.py
	$(PY) bench/bench_extract.py

bench-store: install ## store commits: v1 full copy vs v2 segment, on 1 GB and 10 GB stores under /tmp (~2 min, 21 GB free)
	$(PY) bench/bench_store.py

bench-fit: install ## fit time before/after the validation cadence on a 2.8 GB store it writes under /tmp (~12 min)
	$(PY) bench/bench_fit.py

bench-gpu: install ## every GPU figure of docs/benchmarks.md in one run (needs CUDA; CPU path: --device cpu --tiny)
	$(PY) bench/bench_gpu.py

clean: ## remove caches (not runs/ or features/)
	rm -rf .pytest_cache .ruff_cache build dist *.egg-info
