# The two commands of the README: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo-out

.PHONY: setup demo test test-all bench bench-breadth bench-peers bench-fleet clean

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

# Real architectures no one here wrote, onnxport beside the plain hand export routes.
# timm's metadata asks for torchvision, whose registry wheel breaks this torch: timm is
# installed without it (its layers import torchvision only for ops these models skip).
bench-breadth: setup
	$(BIN)/python -m pip install --quiet --no-deps 'timm==1.0.31'
	$(BIN)/python benchmarks/zoo_breadth.py

# onnxport beside Hugging Face Optimum and Microsoft Olive, installed into their own
# virtual environment under build/ (never into .venv).
bench-peers: setup
	$(BIN)/python benchmarks/peers.py --setup

# A fleet three ways: a sequential convert loop, --executor local, --executor ray.
bench-fleet: setup
	$(BIN)/python benchmarks/fleet.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
