# Everything runs from a virtual environment in .venv that these targets create.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint install system-deps

run: install  ## train LeNet-5 on the bundled MNIST digits, print test accuracy, save lenet5.kiln
	$(BIN)/kiln train lenet5

test: install system-deps  ## lint, type-check and run the test suite
	$(BIN)/ruff check src tests examples scripts benchmarks
	$(BIN)/ruff format --check src tests examples scripts benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest -n 2 --timeout 900

install: $(VENV)/.installed

# torch==2.13.0 first: on our machines it is a CPU build on local disk, and pinning it keeps pip
# from fetching a multi-GB CUDA build. Elsewhere, `pip install torch>=2.11` of your choice works.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0 || $(BIN)/python -m pip install -q "torch>=2.11"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

# Debian packages the tests use: real Fashion-MNIST files (the IDX reader), PostgreSQL (the
# tracking store's contract tests start a throwaway cluster) and Chromium with its driver (the
# dashboard's browser tests). Best effort: tests whose package is missing skip and say why.
SYSTEM_DEPS := dataset-fashion-mnist:/usr/share/datasets/fashion-mnist \
	postgresql:/usr/lib/postgresql chromium:/usr/bin/chromium chromium-driver:/usr/bin/chromedriver

system-deps:
	@missing=""; for dep in $(SYSTEM_DEPS); do [ -e "$${dep#*:}" ] || missing="$$missing $${dep%%:*}"; done; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing) >/dev/null \
		|| echo "note: could not install$$missing; the tests that need them will be skipped"; \
	fi
