# Everything a newcomer needs: `make demo` and `make test` create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: demo test lint check clean stress soak docs

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(INSTALLED)

# The demo needs sdax alone (msgspec is its one dependency): no dev toolchain.
DEMO_VENV ?= .venv-demo
demo:
	test -x $(DEMO_VENV)/bin/python || $(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/python -m pip install -q --disable-pip-version-check -e .
	$(DEMO_VENV)/bin/python -m sdax demo

# API reference from the docstrings, into docs/api/ (not committed): pdoc in its own venv.
DOCS_VENV ?= .venv-docs
docs:
	test -x $(DOCS_VENV)/bin/python || $(PYTHON) -m venv $(DOCS_VENV)
	$(DOCS_VENV)/bin/python -m pip install -q --disable-pip-version-check -e '.[otel]' 'pdoc>=14'
	$(DOCS_VENV)/bin/python -m pdoc --docformat markdown -o docs/api sdax sdax.timeline sdax.otel sdax.testing sdax.report sdax.observers

test: $(INSTALLED)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict sdax

check: lint test

# The monte-carlo stress runner (stress/): random processors and faults, every run checked.
STRESS_SEED ?= 1
stress: $(INSTALLED)
	$(BIN)/python -m stress --runs 100000 --seed $(STRESS_SEED) --loop asyncio --concurrency 8
	$(BIN)/python -m stress --runs 100000 --seed $(STRESS_SEED) --loop uvloop --concurrency 8

soak: $(INSTALLED)
	$(BIN)/python -m stress --soak --runs 100000 --seed $(STRESS_SEED)

clean:
	rm -rf $(VENV) .venv-3.* .venv-demo .venv-docs docs/api .mypy_cache .ruff_cache .pytest_cache .hypothesis

# Benchmarks (benchmarks/README.md): raw asyncio vs this project vs sdax 0.7.2.
# `make bench BENCH_ARGS="--python 3.11 --loop uvloop"` narrows a full run.
.PHONY: bench bench-smoke

bench: $(INSTALLED)
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

bench-smoke: $(INSTALLED)
	$(BIN)/python -m benchmarks.run --smoke $(BENCH_ARGS)
	PYTHONPATH=. $(BIN)/python benchmarks/small_shapes.py --sizes 1 20 --rounds 1
	PYTHONPATH=. $(BIN)/python benchmarks/breakdown.py --sizes 1 20

# Many small concurrent runs against the same work written by hand: the README's
# "many small runs" table (this project and sdax 0.7.2; 3.11 and 3.13; both loops).
.PHONY: bench-small
bench-small: $(INSTALLED)
	$(BIN)/python benchmarks/small_table.py $(BENCH_ARGS)

# Drop-in check against the real sdax 0.7.2, installed from PyPI on first use into a
# scratch venv in ~/.cache/sdax-compat (one per Python); exit 1 on any missing name or
# analysis mismatch. For CI: `make compat PYTHON=python3.11` (fresh machine: ~40 s).
.PHONY: compat
compat: $(INSTALLED)
	$(BIN)/python -m compat.compare_analysis
	$(BIN)/python -m compat.surface

# Real components (issue 17), each started by its target as a child on 127.0.0.1 on a
# free port and stopped again; every load bounded in count and time. CI runs all three.
.PHONY: integration service integration-service integration-worker integration-montecarlo
integration: integration-service integration-worker integration-montecarlo

# What examples/ needs (uvicorn, starlette, aiosqlite, httpx, arq), once per venv.
EXAMPLES := $(VENV)/.installed-examples
$(EXAMPLES): $(INSTALLED) pyproject.toml
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev,examples]'
	touch $(EXAMPLES)

# The README's endpoint as a service (examples/service): uvicorn --loop uvloop, aiosqlite.
# `make service SERVICE_PORT=8001` serves it; `make integration-service` starts it as a
# child and checks it under load with faults, client disconnects and a SIGTERM.
SERVICE_PORT ?= 8000
service: $(EXAMPLES)
	$(BIN)/python -m uvicorn --factory examples.service.app:create_app --loop uvloop \
		--host 127.0.0.1 --port $(SERVICE_PORT)

integration-service: $(EXAMPLES)
	$(BIN)/python -m examples.service.loadtest $(SERVICE_LOADTEST_ARGS)

# The arq worker on a real redis-server (examples/worker/): 2,000 jobs with faults, a
# SIGTERM mid-way and a restart, every job checked; once with arq's job_completion_wait
# at 1 s, once at 0 (arq's default: the SIGTERM cancels every job). Needs root for
# apt-get when redis-server is missing.
integration-worker: $(EXAMPLES)
	command -v redis-server >/dev/null 2>&1 || \
	  (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server)
	PYTHONPATH=. timeout 300 $(BIN)/python -m examples.worker.drive --completion-wait 1 $(WORKER_ARGS)
	PYTHONPATH=. timeout 300 $(BIN)/python -m examples.worker.drive --completion-wait 0 $(WORKER_ARGS)

# The public monte-carlo API (sdax.testing) on the README's endpoint and on the example
# service's own processor (real aiosqlite connections): seeded faults and caller cancels,
# 2,000 runs on each loop, nonzero exit on any violation.
MONTECARLO_SEED ?= 1
integration-montecarlo: $(EXAMPLES)
	$(BIN)/python -m sdax.testing run examples.montecarlo.endpoint:montecarlo \
		--runs 2000 --seed $(MONTECARLO_SEED) --loop both --concurrency 64
	timeout 300 $(BIN)/python -m sdax.testing run examples.montecarlo.service:montecarlo \
		--runs 2000 --seed $(MONTECARLO_SEED) --loop both --concurrency 64
