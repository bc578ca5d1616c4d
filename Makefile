# zchat: every target builds .venv by itself, so a fresh clone needs nothing but python3.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=
#: Members of the swarm's big room (`make swarm SWARM=64 ARGS=--quick` for a short run).
SWARM  ?= 1000

.PHONY: help broker peer test check chaos lint bench swarm clean

help:  ## list the targets
	@grep -E '^[a-z]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

# Reinstall when pyproject.toml changes; the stamp records the last install.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

broker: $(STAMP)  ## run the broker on tcp://127.0.0.1:5555 (ARGS="--bind ..." to change)
	$(BIN)/zchat broker $(ARGS)

peer: $(STAMP)  ## run an interactive peer (ARGS="--nick carol")
	$(BIN)/zchat peer $(ARGS)

test: $(STAMP)  ## run the whole test suite
	$(BIN)/python -m pytest $(ARGS)

check: $(STAMP)  ## run the fast tests only (not slow, not chaos): a minute or less
	$(BIN)/python -m pytest -m "not slow and not chaos" $(ARGS)

chaos: $(STAMP)  ## run only the fault-injection tests
	$(BIN)/python -m pytest -m chaos $(ARGS)

# The folders install as one namespace (zchat.envelope, zchat.wire, ...). mypy finds
# modules by folder, so it reads them through a tree of links laid out as the wheel is.
PACKAGES  := envelope wire broker peer bench
TYPECHECK := build/typecheck

lint: $(STAMP)  ## ruff and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	rm -rf $(TYPECHECK)/zchat && mkdir -p $(TYPECHECK)/zchat
	ln -s $(CURDIR)/zchat/* $(TYPECHECK)/zchat/
	for d in $(PACKAGES); do ln -s $(CURDIR)/$$d $(TYPECHECK)/zchat/$$d; done
	cd $(TYPECHECK) && $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml -p zchat

bench: $(STAMP)  ## measure zchat against bare ZeroMQ and the raw cryptography
	$(BIN)/zchat bench $(ARGS)

swarm: $(STAMP)  ## the broker at scale: join storm, idle, busy and many rooms (SWARM=N members)
	$(BIN)/zchat bench --swarm $(SWARM) $(ARGS)

clean:  ## remove the virtual environment and caches
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache
