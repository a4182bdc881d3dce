# The two commands of the README: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo-out

.PHONY: setup demo test test-all bench clean

setup: $(STAMP)

# The two example plugins under examples/ are installed from their own directories, the
# way a user installs a third-party plugin, so the suite tests them as installed packages.
EXAMPLE_PLUGINS := examples/onnxport-sklearn examples/onnxport-fp16

$(STAMP): pyproject.toml constraints.txt $(addsuffix /pyproject.toml,$(EXAMPLE_PLUGINS))
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]' \
		$(addprefix -e ,$(EXAMPLE_PLUGINS))
	touch $(STAMP)

# Convert every bundled reference model and verify it; the artifacts land in demo-out/.
demo: setup
	$(BIN)/python examples/demo.py --output $(DEMO_OUT)

# The fast suite (what CI runs), then each example plugin's own tests.
# `make test-all` adds the slow conversions.
test: setup
	$(BIN)/python -m pytest tests $(addsuffix /tests,$(EXAMPLE_PLUGINS))

test-all: setup
	$(BIN)/python -m pytest -m '' tests $(addsuffix /tests,$(EXAMPLE_PLUGINS))

# Reproduce the reference models' published figures; rewrites docs/benchmarks.md.
bench: setup
	$(BIN)/python benchmarks/zoo_figures.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
