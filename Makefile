# The two commands of the README: `make demo` and `make test`. Each does all of its own set-up.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: demo test lint typecheck unit bench system-deps node-deps components chart-files clean

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

# The Collector, Prometheus 3, Alertmanager, Jaeger v2 and Helm at the versions .env pins, built from their Go modules
# into ~/.cache/obsbox/bin (once per machine; seconds when cached). Without Go it says what it skips.
components:
	bash scripts/build-components.sh

# The box's rules, dashboards, Collector pipeline, datasources and Alertmanager routes, copied (plain files, no
# symlinks) into the Helm chart that renders them for Kubernetes. tests/deploy/test_chart.py fails while a copy
# differs from the box's file: after changing alerts/, dashboards/, collector/ or backends/, run `make chart-files`.
CHART_FILES := deploy/helm/obsbox/files
chart-files:
	rm -rf $(CHART_FILES) && mkdir -p $(CHART_FILES)/alerts/prometheus $(CHART_FILES)/alerts/loki \
	  $(CHART_FILES)/dashboards $(CHART_FILES)/collector $(CHART_FILES)/grafana $(CHART_FILES)/alertmanager
	cp alerts/prometheus/*.yml $(CHART_FILES)/alerts/prometheus/
	cp alerts/loki/fake/*.yaml $(CHART_FILES)/alerts/loki/
	cp dashboards/obsbox/*.json $(CHART_FILES)/dashboards/
	cp collector/config.yaml $(CHART_FILES)/collector/
	cp backends/grafana/provisioning/datasources/obsbox.yaml $(CHART_FILES)/grafana/datasources.yaml
	cp backends/alertmanager/alertmanager.yml $(CHART_FILES)/alertmanager/

clean:
	rm -rf $(VENV) build dist *.egg-info tests/js/node_modules
