# The README's two commands: `make demo` (the main job) and `make test` (every test).
# Each sets up what it needs on first use: the virtual environment, the packages, the Kafka
# broker's jars (from Maven Central) and the broker itself (scripts/kafka-start).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml lab/pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: setup broker broker-stop lint test demo bench bench-core clean

setup: $(STAMP)

# The runtime package (its wheel is what users install) and, beside it, the lab: the demo, the
# benchmark and its peers, which run from this checkout only.
$(STAMP): pyproject.toml lab/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' -e ./lab
	@rm -f $(VENV)/.installed-*
	@touch $@

broker:
	@scripts/kafka-start

broker-stop:
	@scripts/kafka-stop

lint: setup
	$(BIN)/ruff check streams lab tests scripts
	$(BIN)/ruff format --check streams lab tests scripts
	$(BIN)/mypy streams lab/taskd_lab

test: setup broker lint
	$(BIN)/pytest $(PYTEST_ARGS)

# The reference workload (45K tasks) live through Kafka: the dispatcher and real agents, then
# the round-robin-push baseline; summary, out/demo/demo.json and out/demo/demo.png.
demo: setup broker
	$(BIN)/taskd topics create
	$(BIN)/taskd demo

# The pipeline against the floor under it (confluent loop, Faust passthrough, Kafka alone),
# the peers and memory: report in out/bench/, regenerates docs/benchmarks.md (~10 minutes).
bench: setup broker
	$(BIN)/taskd bench

# Micro-benchmarks of the pure core (routing, scheduler, simulator); figures, not tests.
bench-core: setup
	$(BIN)/python -m taskd_lab.bench.routing_bench
	$(BIN)/python -m taskd_lab.bench.scheduler_bench
	$(BIN)/python -m taskd_lab.bench.sim_bench

clean:
	rm -rf .run/state out .pytest_cache .mypy_cache .ruff_cache .hypothesis
