# The two commands of the README: `make demo` and `make test`. Each does all of its own set-up.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: demo test lint typecheck unit bench system-deps node-deps components clean

demo: $(STAMP) system-deps components
	$(VENV)/bin/obsbox demo

test: $(STAMP) system-deps node-deps components
	$(PY) -m ruff check obsbox tests benchmarks
	$(PY) -m mypy
	$(PY) -m pytest

bench: system-deps
	$(MAKE) $(STAMP) EXTRAS=dev,bench
	$(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) benchmarks/overhead.py

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

system-deps:
	bash scripts/install-system-deps.sh

node-deps:
	bash scripts/install-node-deps.sh

# The Collector, Prometheus 3, Alertmanager and Jaeger v2 at the versions .env pins, built from their Go modules
# into ~/.cache/obsbox/bin (once per machine; seconds when cached). Without Go it says what it skips.
components:
	bash scripts/build-components.sh

clean:
	rm -rf $(VENV) build dist *.egg-info tests/js/node_modules
