# borne — two commands: `make demo` runs a station on simulated hardware,
# `make test` runs the whole test suite. Both create .venv on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml 2>/dev/null | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: demo scenario test test-fast bench venv system-deps clean

demo: venv
	$(BIN)/borne demo $(DEMO_ARGS)

scenario: venv
	$(BIN)/borne demo --scenario

test: venv system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: venv
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

bench: venv
	$(BIN)/python -m bench

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || \
		{ echo "borne needs Python 3.11 or newer ($(PYTHON) is $$($(PYTHON) --version 2>&1))"; exit 2; }
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing python3-venv (Debian)"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; \
		else echo "Python's venv module is missing: run 'sudo apt-get install python3-venv'"; exit 2; fi; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@rm -f $(VENV)/.installed-*
	@touch $@

# The tests start a real mosquitto broker; install Debian's when it is missing.
system-deps:
	@if ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing mosquitto (Debian) for the MQTT tests"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null; \
		else \
			echo "mosquitto is not installed: the MQTT tests will be skipped (sudo apt-get install mosquitto)"; \
		fi; \
	fi

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis data/demo
