# Arteria — the two commands a newcomer needs are `make up` and `make test`.
# Everything here is a thin wrapper: the real work lives in deploy/local/ and cargo.

SHELL := /bin/bash
STACK := deploy/local/stack.sh
PIPELINE := deploy/local/pipeline.sh
CARGO ?= cargo

.PHONY: help up down demo test test-unit test-integration test-disruptive schemas-check \
        up-stack down-stack stack-status bench fuzz lint fmt build

help:
	@echo "make up          bring up the local stack (Kafka + schema registry) and the pipeline"
	@echo "make down        stop everything"
	@echo "make test        all tests: unit, schema contracts, integration against the real stack"
	@echo "make bench       benchmarks (see docs/benchmarks.md)"
	@echo "make fuzz        run the fuzz targets (nightly + cargo-fuzz)"
	@echo "make lint        rustfmt check + clippy"

build:
	$(CARGO) build --workspace --release

# Bring-up: the stack (fetched on first use), the five services (built in release), then the
# example messages sent through MLLP. Returns once everything answers.
up: up-stack
	$(PIPELINE) up
	$(PIPELINE) demo

down:
	$(PIPELINE) down
	$(STACK) down

up-stack:
	$(STACK) up

down-stack:
	$(STACK) down

stack-status:
	$(STACK) status

# The test command (README, .ci/run). Starts the local stack if it is not running and stops it
# again afterwards in that case, so a developer's running stack is left as it was.
test:
	@set -euo pipefail; \
	started=0; \
	if ! $(STACK) status >/dev/null 2>&1; then $(STACK) up; started=1; fi; \
	eval "$$($(STACK) env)"; \
	status=0; \
	$(MAKE) --no-print-directory test-unit test-integration test-disruptive || status=$$?; \
	if [ $$started = 1 ]; then $(STACK) down || true; fi; \
	exit $$status

# Unit tests, doc tests and the integration tests that share the broker politely.
test-unit:
	$(CARGO) test --workspace --exclude arteria-tests

# The end-to-end tests run the service binaries: build them first.
test-integration:
	$(CARGO) build -p arteria-ingest -p arteria-normalize -p arteria-enrich -p arteria-fanout -p arteria-query -p arteria-cli
	$(CARGO) test -p arteria-tests

# Tests that stop or kill the broker: run alone, after the others, one at a time.
test-disruptive:
	$(CARGO) test -p arteria-tests --test broker_faults --test reliability -- --ignored --test-threads=1

schemas-check:
	$(CARGO) test -p arteria-tests --test schemas

bench:
	@echo "see docs/benchmarks.md for the per-area commands"

fuzz:
	@echo "see crates/hl7v2/fuzz/README.md"

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
