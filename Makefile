# Two set-up commands: `make demo` and `make test`. Both create .venv and install everything
# (torch from PyPI brings CUDA libraries: ~7 GB and ~9 minutes the first time); both are
# idempotent and quick once installed (the install step reruns only when pyproject changes).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: demo test bench lint services-up services-down clean

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,ml,bench]'
	touch $@

demo: $(INSTALLED)
	$(BIN)/distillguard demo

test: $(INSTALLED)
	scripts/run-tests

# Long benchmarks (not part of `make test`): real Kafka → worker → ClickHouse server, then
# detection quality and detector throughput on the companion's real-prompt scenario, then the
# provenance experiment on real students (~2 h on 2 cores).
bench: $(INSTALLED)
	scripts/with-services $(BIN)/python -m bench.pipeline $(BENCH_ARGS)
	scripts/with-services $(BIN)/python -m bench.api $(API_BENCH_ARGS)
	$(BIN)/python -m bench.detection --large-batch 5000 $(DETECTION_ARGS)
	$(BIN)/distillguard provenance experiment

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

services-up:
	scripts/clickhouse-up
	scripts/kafka-up

services-down:
	-scripts/kafka-down
	-scripts/clickhouse-down

clean: services-down
	rm -rf $(VENV) .distillguard
