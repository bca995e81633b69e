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

# Real Fashion-MNIST files for the IDX reader's tests (Debian's package). Best effort: the tests
# that need them are skipped where they cannot be installed.
system-deps:
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) >/dev/null \
		|| echo "note: could not install dataset-fashion-mnist; its tests will be skipped"; \
	fi
