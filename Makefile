# The two commands from a fresh clone: `make start` and `make test`.
# Both run `make setup` first, which is idempotent and installs whatever is missing.
VENV ?= .venv
PY := $(VENV)/bin/python
BGC := $(VENV)/bin/bg-compiler
SETUP_STAMP := $(VENV)/.installed
# The Node clients the suite runs against the service (tests/clients/node).
CLIENTS_DIR := tests/clients/node
CLIENTS_STAMP := $(CLIENTS_DIR)/node_modules/.installed
# The playground's code editor: CodeMirror from npm, bundled into the package's static assets.
EDITOR_DIR := web/editor
EDITOR_BUNDLE := src/bgcompiler/static/play/vendor/codemirror.js
# mypy's incremental cache, shared by every clone of this user (its entries are checked
# against each file's hash): a fresh clone's type check takes 1 s instead of 14.
export MYPY_CACHE_DIR ?= $(HOME)/.cache/bg-compiler/mypy

.PHONY: setup bytecode engine images editor redis distributed clients browser start test test-unit check lint typecheck clean bench bench-queues

# `make setup DISTRIBUTED=1` (or `make distributed`) also installs Redis for the distributed
# mode; the single-node default needs none. The test fixtures install it themselves when missing.
setup: $(SETUP_STAMP) bytecode engine images editor $(if $(DISTRIBUTED),redis)

# The service's modules compiled ahead (only what changed): where the environment sets
# PYTHONDONTWRITEBYTECODE, each start (and each service a test starts) would compile them
# all again, a quarter of a second of CPU each time.
bytecode: $(SETUP_STAMP)
	$(PY) -m compileall -q src

distributed: setup redis

$(SETUP_STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

engine:
	bash scripts/setup-engine.sh

images: $(SETUP_STAMP) engine
	$(BGC) images build --missing busybox python gcc

# Debian's redis-server; installing it starts nothing (docs/deployment.md: how to run it).
redis:
	command -v redis-server >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server; }

editor: $(EDITOR_BUNDLE)

$(EDITOR_BUNDLE): $(EDITOR_DIR)/package.json $(EDITOR_DIR)/package-lock.json $(EDITOR_DIR)/build.mjs $(EDITOR_DIR)/src/index.js
	command -v npm >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm; }
	cd $(EDITOR_DIR) && npm ci --no-audit --no-fund && node build.mjs

clients: $(CLIENTS_STAMP)

$(CLIENTS_STAMP): $(CLIENTS_DIR)/package.json $(CLIENTS_DIR)/package-lock.json
	command -v npm >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm; }
	cd $(CLIENTS_DIR) && npm ci --no-audit --no-fund
	touch $@

# Debian's chromium for the tests of /docs (never a browser a tool downloads).
browser:
	command -v chromium >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

start: setup
	$(BGC) start $(ARGS)

# Two test processes: most tests wait (on runs, timeouts, the engine) far more than they
# compute. The tests marked `exclusive` (they freeze or restart dockerd, run a cluster on a
# second engine, or are themselves the load: the soak) run after the others, alone.
TEST_PROCESSES ?= 2

test: setup clients browser check
	$(PY) -m pytest -n $(TEST_PROCESSES) --dist loadfile -m "not exclusive" $(PYTEST_ARGS)
	$(PY) -m pytest -m exclusive $(PYTEST_ARGS)

test-unit: $(SETUP_STAMP) editor
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

check: lint typecheck

lint: $(SETUP_STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

typecheck: $(SETUP_STAMP)
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --strict benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

bench: setup redis
	$(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) benchmarks/bench.py $(BENCH_ARGS)
	$(PY) benchmarks/engines_bench.py $(ENGINES_BENCH_ARGS)
	$(PY) benchmarks/jobs_bench.py $(JOBS_BENCH_ARGS)
	$(PY) benchmarks/cluster_bench.py $(CLUSTER_BENCH_ARGS)

# The queue engines the distributed mode was chosen among (benchmarks/results/queue_engines.md);
# minutes long, on a Redis of its own. Not part of `bench`: the choice is made, not tracked.
bench-queues: setup
	$(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) benchmarks/queue_engines.py $(QUEUE_BENCH_ARGS)
