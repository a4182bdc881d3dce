# The two commands of the README: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo-out

.PHONY: setup demo test test-all bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# Convert every bundled reference model and verify it; the artifacts land in demo-out/.
demo: setup
	$(BIN)/python examples/demo.py --output $(DEMO_OUT)

# The fast suite (what CI runs). `make test-all` adds the slow conversions.
test: setup
	$(BIN)/python -m pytest

test-all: setup
	$(BIN)/python -m pytest -m ''

# Reproduce the reference models' published figures; rewrites docs/benchmarks.md.
bench: setup
	$(BIN)/python benchmarks/zoo_figures.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
