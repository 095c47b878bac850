# canary-bot — the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
# Control-plane binaries are cached outside the repo (see hack/build-control-plane.sh).
GO_PATH_PREFIX = $(shell VENV=$(VENV) bash hack/ensure-system-deps.sh | tail -n1)
WITH_GO = PATH="$(GO_PATH_PREFIX)$(if $(GO_PATH_PREFIX),:)$$PATH"

.PHONY: help venv deps control-plane test unit lint run cluster-up cluster-down bench clean

help:
	@echo "make run           start canary-bot (a local sandbox when no Slack or cluster is configured)"
	@echo "make test          install everything, build the control plane, lint and run all tests"
	@echo "make unit          only the fast tests that need no services"
	@echo "make lint          ruff, mypy --strict and import-linter"
	@echo "make cluster-up    start the local control plane and print its KUBECONFIG"
	@echo "make cluster-down  stop it"
	@echo "make bench         run the benchmarks in bench/ and print their table"

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@echo "[deps] installing canary-bot and its development tools into $(VENV)"
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

deps: venv
	@VENV=$(VENV) bash hack/ensure-system-deps.sh >/dev/null

control-plane: deps
	@$(WITH_GO) bash hack/build-control-plane.sh >/dev/null
	@$(WITH_GO) bash hack/build-gateway.sh >/dev/null

lint: venv
	$(VENV)/bin/ruff check bot rollout sandbox tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

unit: venv
	$(PY) -m pytest -m "not cluster and not prometheus" $(PYTEST_ARGS)

test: control-plane lint
	$(PY) -m pytest $(PYTEST_ARGS)

run: control-plane
	@VENV=$(VENV) bash hack/run.sh $(ARGS)

cluster-up: control-plane
	@$(PY) -m sandbox.controlplane up

cluster-down: venv
	@$(PY) -m sandbox.controlplane down

bench: control-plane
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
