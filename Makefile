# galaxyprop: `make run` (set up + the pipeline), `make test` (everything CI runs), `make test-fast` (unit tests),
# `make lint`, `make bench`, `make ui`.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: install constraints run test test-fast lint bench ui clean-stores

# torch with pip (its CPU build lies in pip's local wheel folder), everything else with uv (a third of pip's
# time) at the versions constraints.txt pins: the environment the tests passed in
UV := uv==0.13.10
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(UV) $$(grep '^torch==' constraints.txt)
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python --constraint constraints.txt -e ".[dev,rail]"
	touch $@

install: $(VENV)/.installed

# after a change to pyproject.toml's pins: pip resolves them afresh, and what it installed becomes the constraints
constraints:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(UV) -e ".[dev,rail]"
	{ sed -n '1,2p' constraints.txt; $(BIN)/python -m pip freeze --exclude-editable | grep -v '^uv=='; } > constraints.new
	mv constraints.new constraints.txt

run: install
	dvc repro
	dvc push --quiet
	$(BIN)/galaxyprop summary

# the suite on TEST_WORKERS processes (pytest-xdist; each test file on one worker, so a module's pipeline runs
# once), the 25 slowest tests printed at the end
TEST_WORKERS ?= 2
test: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=25

# unit tests only (no pipeline runs, no servers): the lane to run while editing
test-fast: install
	$(BIN)/python -m pytest -m "not integration and not slow" -q -n $(TEST_WORKERS) --dist loadfile

lint: install
	$(BIN)/ruff check .
	$(BIN)/python tools/stage_deps.py

# every section of reports/bench.json; `make bench ONLY="growth storage"` runs those alone (merged into the file)
bench: install
	$(BIN)/python benchmarks/run.py $(if $(ONLY),--only $(ONLY))

ui: install
	$(BIN)/galaxyprop ui

clean-stores:
	@echo "This deletes the MLflow runs, the model registry and the Optuna studies in mlruns/."
	@read -p "Type 'yes' to go on: " answer && [ "$$answer" = yes ] && rm -rf mlruns/mlflow.db mlruns/optuna.db mlruns/artifacts
