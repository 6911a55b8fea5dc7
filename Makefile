# Voltway — `make run` and `make test` do all their own set-up from a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The nearby-search kernel (C, built with cffi by setup.py; see app/discovery/kernel.py).
KERNEL     := app/discovery/_nearby.abi3.so
KERNEL_SRC := setup.py app/discovery/kernel_build.py app/discovery/nearby.c app/discovery/nearby.h
# Search without the compiled kernel is an error, not a silent numpy fallback.
REQUIRE_KERNEL ?= 1
export REQUIRE_KERNEL

# pytest-xdist workers for `make test`: the suite waits on sockets, timers and subprocesses
# far more than on the CPU (one process: 19 min wall for 11 min of CPU on 2 cores).
TEST_WORKERS ?= 2

.DEFAULT_GOAL := help
.PHONY: help run test lint fmt openapi openapi-check bench bench-import bench-ocpp bench-reservations clean browser fuzz soak

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.lock
	@touch $(STAMP)

$(KERNEL): $(STAMP) $(KERNEL_SRC)
	$(BIN)/python setup.py -q build_ext --inplace
	@touch $(KERNEL)

# Test-only Node tools (Prism serves Twilio's OpenAPI spec; see package.json).
node_modules/.installed: package.json $(wildcard package-lock.json)
	npm install --no-audit --no-fund
	@touch $@

# Debian's Chromium for the pricing page's browser tests (tests/admin_page): Playwright
# drives it through `executable_path`, so no browser build is downloaded. Where it cannot
# be installed (no apt-get, not root) those tests skip with a loud message.
CHROMIUM ?= /usr/bin/chromium
APT := $(shell [ "$$(id -u)" = 0 ] && echo apt-get || (command -v sudo >/dev/null && echo "sudo -n apt-get"))
browser: ## install Debian's chromium for the browser tests (idempotent)
	@if [ -x "$(CHROMIUM)" ]; then :; \
	elif command -v apt-get >/dev/null && [ -n "$(APT)" ]; then \
	  echo "installing Debian's chromium for the browser tests"; \
	  DEBIAN_FRONTEND=noninteractive $(APT) install -y -q chromium >/dev/null 2>&1 \
	  || (DEBIAN_FRONTEND=noninteractive $(APT) update -q >/dev/null 2>&1 \
	      && DEBIAN_FRONTEND=noninteractive $(APT) install -y -q chromium >/dev/null 2>&1) \
	  || echo "!!! could not install chromium: the browser tests (tests/admin_page) will be SKIPPED"; \
	else echo "!!! no $(CHROMIUM) and no apt-get as root: the browser tests (tests/admin_page) will be SKIPPED"; fi

run: $(STAMP) $(KERNEL) ## API (2 workers, :8000) + arq worker + demo fleet; embedded PG/Valkey unless DATABASE_URL/REDIS_URL
	$(BIN)/python -m app run

test: $(STAMP) $(KERNEL) node_modules/.installed browser lint openapi-check ## lint, OpenAPI drift check, then the test suite (real PostgreSQL + Redis)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

lint: $(STAMP) ## ruff (lint + format check) and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: $(STAMP) ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

openapi: $(STAMP) ## regenerate openapi/openapi.json from the code
	$(BIN)/python -m app openapi --output openapi/openapi.json

openapi-check: $(STAMP) ## fail when openapi/openapi.json differs from the code
	@$(BIN)/python -m app openapi --output - | diff -q openapi/openapi.json - >/dev/null \
	  || (echo "openapi/openapi.json is out of date: run 'make openapi'"; exit 1)

bench: $(STAMP) $(KERNEL) ## run every benchmark (bench/all.py; QUICK=1 for a short smoke run)
	$(BIN)/python bench/all.py $(if $(QUICK),--quick)

bench-import: $(STAMP) $(KERNEL) ## onboarding 10,000 chargers / 30,000 connectors in one call
	$(BIN)/python bench/fleet_import.py

bench-ocpp: $(STAMP) $(KERNEL) ## 10,000 simulated OCPP chargers on one API process, StatusNotification/MeterValues msg/s
	$(BIN)/python bench/ocpp_load.py

bench-reservations: $(STAMP) $(KERNEL) ## N drivers racing over M connectors through the real service: holds/s, p99, no double booking
	$(BIN)/python bench/reservations.py $(BENCH_ARGS)

soak: $(STAMP) $(KERNEL) ## the whole driver journey for 10 min (SOAK_ARGS="--minutes 2"), then its invariants (bench/soak.py)
	$(BIN)/python bench/soak.py $(SOAK_ARGS)

fuzz: $(STAMP) $(KERNEL) ## schemathesis over openapi/openapi.json, every operation, >= 5,000 requests (bench/fuzz.py)
	$(BIN)/python bench/fuzz.py $(FUZZ_ARGS)

clean: ## remove the venv, node_modules and local data (embedded database included)
	rm -rf $(VENV) node_modules .data build app/discovery/_nearby*.so
