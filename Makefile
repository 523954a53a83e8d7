# Two commands do all set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install demo test lint format bench check-pythons clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned to the CPU build on disk where it exists, so nothing pulls a CUDA build
	$(BIN)/python -m pip install --quiet "torch==2.13.0" || $(BIN)/python -m pip install --quiet torch
	$(BIN)/python -m pip install --quiet -e ".[test,reference]"
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/dfablate ablate experiment=demo

# The suite runs in TEST_WORKERS processes (pytest-xdist; most tests use one core); tests that
# share a module fixture stay in one process (xdist_group). TEST_WORKERS=0: one process.
TEST_WORKERS ?= auto

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --maxprocesses=4 --dist loadgroup

lint: $(STAMP)
	$(BIN)/ruff check dfablate tests scripts
	$(BIN)/ruff format --check dfablate tests scripts

format: $(STAMP)
	$(BIN)/ruff format dfablate tests scripts
	$(BIN)/ruff check --fix dfablate tests scripts

bench: $(STAMP)
	$(BIN)/python scripts/bench_features.py
	$(BIN)/python scripts/bench_metrics.py
	$(BIN)/python scripts/bench_train.py
	$(BIN)/python scripts/bench_loss.py

# Not in CI: installs dfablate on pyenv's Python 3.12 and 3.13 (torch from PyPI) and runs it.
check-pythons:
	scripts/check_pythons.sh

clean:
	rm -rf $(VENV) outputs .pytest_cache
