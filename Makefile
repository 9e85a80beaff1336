# The same targets run locally and in CI (.ci/run calls `make test`).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= examples/forecaster.yml

.PHONY: venv prometheus test test-fast lint demo check clean

# The package is installed editable, so its modules are compiled where they are, not by pip. With
# PYTHONDONTWRITEBYTECODE set (as on the CI machines) Python would compile them again at every start, 0.1 s in the CLI
# and as much in the fit workers' fork server. compileall writes what is stale and skips the rest.
venv: $(VENV)/.installed
	@$(BIN)/python -m compileall -q forecaster

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

# The distribution's Prometheus (and promtool, Alertmanager, docker-compose) for the tests.
prometheus:
	@scripts/ensure-prometheus test

test: venv prometheus
	$(BIN)/pytest

# Unit tests too run promtool, amtool and docker-compose on the shipped rules, dashboards and compose file.
test-fast: venv prometheus
	$(BIN)/pytest -m "not integration and not slow"

lint: venv
	$(BIN)/ruff check forecaster devtools tests benchmarks
	$(BIN)/ruff format --check forecaster devtools tests benchmarks
	$(BIN)/mypy

check: venv
	$(BIN)/forecaster check -c $(CONFIG)

# The demo needs only Prometheus itself.
demo: venv
	@scripts/ensure-prometheus demo
	$(BIN)/python -m devtools.demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache demo-state
