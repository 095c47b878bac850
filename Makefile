# canary-bot — the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
# Control-plane binaries are cached outside the repo (see hack/build-control-plane.sh).
GO_PATH_PREFIX = $(shell VENV=$(VENV) bash hack/ensure-system-deps.sh | tail -n1)
WITH_GO = PATH="$(GO_PATH_PREFIX)$(if $(GO_PATH_PREFIX),:)$$PATH"

.PHONY: help venv deps control-plane helm image test unit lint run cluster-up cluster-down bench clean

help:
	@echo "make run           start canary-bot: the sandbox when no Slack or cluster is configured;"
	@echo "                   with a kube context, console mode (front only; ARGS=--engine for an engine)"
	@echo "make run SANDBOX=1 always the local sandbox, whatever is configured"
	@echo "make run ROUTER=gateway  the sandbox on Gateway API: real Contour + Envoy (needs root)"
	@echo "make test          install everything, build the control plane, helm and the image, lint and run all tests"
	@echo "make helm          build helm for the chart tests (cached; pinned in hack/versions.env)"
	@echo "make image         build the container image with buildah, no Docker engine (needs root)"
	@echo "make unit          only the fast tests that need no services"
	@echo "make lint          ruff, mypy --strict and import-linter"
	@echo "make cluster-up    start the local control plane and print its KUBECONFIG"
	@echo "make cluster-down  stop it"
	@echo "make bench         run the benchmarks in bench/ and print their table"
	@echo "make venv          create .venv and install canary-bot with its development tools"
	@echo "make deps          venv plus the system pieces (Prometheus via apt-get, Go)"
	@echo "make control-plane build (or reuse) the cached control-plane binaries"
	@echo "make clean         remove .venv and the tool caches"
	@echo "make help          this list"

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
	$(PY) -m pytest -m "not cluster and not prometheus and not image" $(PYTEST_ARGS)

# helm from its Go module, cached like the control plane (hack/build-helm.sh).
helm: deps
	@$(WITH_GO) bash hack/build-helm.sh >/dev/null

# The Dockerfile built on a local Debian base (hack/build-image.sh; tests/deploy/test_image.py
# runs it).
image:
	@bash hack/build-image.sh >/dev/null

test: control-plane helm image lint
	$(PY) -m pytest $(PYTEST_ARGS)

# The control plane is built only when the sandbox is what runs (hack/run.sh decides).
run: venv
	@VENV=$(VENV) SANDBOX=$(SANDBOX) ROUTER=$(ROUTER) bash hack/run.sh $(ARGS)

cluster-up: control-plane
	@$(PY) -m sandbox.controlplane up

cluster-down: venv
	@$(PY) -m sandbox.controlplane down

bench: control-plane
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
