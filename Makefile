# Two commands matter: `make demo` and `make test`. Both build .venv on first use.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint format bench evaluate clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	# The default plate model; --no-deps because its own pins are years old.
	$(BIN)/python -m pip install --quiet --no-deps platedet==0.0.2
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/platemask prepare-model
	touch $@

demo: install
	$(BIN)/python scripts/demo.py $(if $(PHOTOS),--photos "$(PHOTOS)")

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python scripts/bench.py

evaluate: install
	$(BIN)/python scripts/evaluate.py $(if $(DATA),$(DATA))

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache demo-output
