# digitae's commands. `make run` serves, `make test` checks; both install first, and only when something changed.
#
# Every install goes through scripts/install.sh (the Dockerfile uses it too), at the versions of the lock,
# constraints.txt (`make lock` regenerates it). Its settings pass through from the environment or the command line:
# VENV (default .venv), PYTHON, TORCH_INDEX_URL.

VENV ?= .venv
export VENV
BIN := $(VENV)/bin
INSTALL := scripts/install.sh --editable
IMAGE ?= digitae
# The real MNIST test set, when this machine has it beside the repository.
TEST_DATA ?= $(wildcard ../shared/data/mnist)
TEST_DATA_ARG := $(if $(TEST_DATA),--test-data $(TEST_DATA))

# An install is redone only when what it depends on changed (or the virtual environment is gone).
RUN_STAMP := $(VENV)/.digitae-run.stamp
DEV_STAMP := $(VENV)/.digitae-dev.stamp
# checkov (the policy scan of deploy/kubernetes, tests/delivery/test_kubernetes.py) in a venv of its own: its exact
# pins (packaging<24, networkx<2.7) cannot share one environment, or one lock, with pytest and torch.
CHECKOV_VERSION := 3.3.30
CHECKOV := $(VENV)/checkov/bin/checkov
# The kserve SDK (its InferenceRESTClient drives /v2 in tests/service/api/test_v2_kserve.py) in a venv of its own too:
# its pins (fastapi, uvicorn, protobuf, ...) need not match our lock.
KSERVE_VERSION := 0.21.0
KSERVE := $(VENV)/kserve/bin/python
INSTALL_INPUTS := pyproject.toml constraints.txt scripts/install.sh
# Clients nobody here wrote, run against a real server by tests/clients/test_generated_clients.py: the OpenAPI
# validator and openapi-python-client in a venv of their own (their pins are theirs), and openapi-typescript,
# openapi-fetch and tsc from npm at the versions of clients/typescript/package-lock.json. The endpoint template in
# clients/openapi-python-client/templates/ is this openapi-python-client version's, with one change: bump them together.
OPENAPI_TOOLS_VERSIONS := openapi-spec-validator==0.9.0 openapi-python-client==0.29.1
OPENAPI_TOOLS := $(VENV)/openapi-tools/bin/openapi-python-client
NODE_TOOLS := clients/typescript/node_modules/.package-lock.json

.DEFAULT_GOAL := help
.PHONY: help run test lint bench soak train report docker container-test lock

help:  ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(RUN_STAMP): $(INSTALL_INPUTS)
	$(INSTALL)
	@touch $@

# The dev install is a superset of the run install, so it satisfies `make run` too.
$(DEV_STAMP): $(INSTALL_INPUTS)
	$(INSTALL) --extras dev
	@touch $@ $(RUN_STAMP)

run: $(RUN_STAMP)  ## serve the committed checkpoints on 127.0.0.1:8000 (settings: DIGITAE_* variables)
	$(BIN)/python -m service

# The suite runs on every core (pytest-xdist: most tests wait on real servers, browsers and balancers); the few marked
# `serial`, which measure timing or recovery under load, then run alone. The coverage figure covers both parts.
test: lint $(CHECKOV) $(KSERVE) $(OPENAPI_TOOLS) $(NODE_TOOLS)  ## lint, then the test suite (without the long soak), with its coverage of the product
	$(BIN)/python -m pytest --numprocesses auto --cov --cov-report= -m 'not soak and not serial'
	$(BIN)/python -m pytest --cov --cov-append --cov-report=term -m serial

# The same four checks run before each commit once `$(BIN)/pre-commit install` is done (.pre-commit-config.yaml).
lint: $(DEV_STAMP)  ## formatting (ruff format), lint rules (ruff check), types (mypy), the layers (lint-imports)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# The load generator is wrk (a Debian package, not a Python one): installed here when missing and run as root.
bench: $(DEV_STAMP)  ## measure serving and training speed (figures printed and written to bench-results/)
	@command -v wrk >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then apt-get update -qq && apt-get install -y -qq wrk; \
	  else echo "make bench needs wrk: run 'sudo apt-get install -y wrk' (or 'brew install wrk'), then again" >&2; exit 2; fi; }
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

soak: $(DEV_STAMP)  ## the long reliability run: minutes of load against a real multi-worker server
	$(BIN)/python -m pytest -m soak

train: $(DEV_STAMP)  ## retrain every model on the default data into models/checkpoints/
	$(BIN)/python -m training sweep --vae-betas 1 0.5 4 --out models/checkpoints $(TEST_DATA_ARG)

report: $(DEV_STAMP)  ## regenerate reports/ (figures and tables) from the checkpoints
	$(BIN)/python -m training report --out reports $(TEST_DATA_ARG)

docker:  ## build the service image (digitae) and the training image (digitae-train)
	docker build --tag $(IMAGE) .
	docker build --target train --tag $(IMAGE)-train .

# Podman (Debian's packages) stands in for Docker here; the script installs it when missing and run as root.
container-test: $(DEV_STAMP)  ## build both images with podman and run them and docker-compose.yml for real
	VENV=$(VENV) scripts/container-test.sh

lock:  ## update constraints.txt to pyproject.toml (UPGRADE=1: every package at its newest release)
	UPGRADE=$(UPGRADE) scripts/lock.sh

$(CHECKOV):
	$(if $(PYTHON),$(PYTHON),python3) -m venv $(VENV)/checkov
	$(VENV)/checkov/bin/pip install --quiet --disable-pip-version-check checkov==$(CHECKOV_VERSION)

$(KSERVE):
	$(if $(PYTHON),$(PYTHON),python3) -m venv $(VENV)/kserve
	$(VENV)/kserve/bin/pip install --quiet --disable-pip-version-check kserve==$(KSERVE_VERSION)

$(OPENAPI_TOOLS):
	$(if $(PYTHON),$(PYTHON),python3) -m venv $(VENV)/openapi-tools
	$(VENV)/openapi-tools/bin/pip install --quiet --disable-pip-version-check $(OPENAPI_TOOLS_VERSIONS)

# npm ci: exactly the lock's versions (Node 20 and npm: Debian's nodejs and npm packages, or nodejs.org's).
$(NODE_TOOLS): clients/typescript/package-lock.json
	cd clients/typescript && npm ci --no-audit --no-fund --loglevel=error
