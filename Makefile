# The two commands a fresh machine needs: `make run` and `make test`. Both set up .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/pqtwin sim scenarios/paper-3node.yaml --mode both --out runs/paper-3node

test: $(STAMP)
	$(BIN)/ruff check sim hw tests bench
	$(BIN)/ruff format --check sim hw tests bench
	$(BIN)/python -m pytest -q -n 2

lint: $(STAMP)
	$(BIN)/ruff check sim hw tests bench
	$(BIN)/mypy sim

bench: $(STAMP)
	$(BIN)/python bench/sim_speed.py

clean:
	rm -rf $(VENV) runs .pytest_cache
