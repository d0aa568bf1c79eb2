# cni-py: see README.md. Everything runs as root on Debian 12.
SHELL := /bin/bash
VENV_PY := .venv/bin/python3
DESTDIR ?= /opt/cni/bin
UNITDIR ?= /etc/systemd/system
PYTEST_ARGS ?=

.PHONY: setup bin demo test install bench clean

# Debian packages + the project virtualenv (idempotent).
setup:
	@bash build/setup.sh

# dist/bin/: the drop-in binaries, one self-contained executable per CNI type name
# (build/standalone.py: libpython linked in, the plugin's modules appended to each file).
# dist/src-bin/: launchers running the same plugins from source (development, benchmarks).
bin: setup
	@$(VENV_PY) -m compileall -q cnilib plugins
	@echo "building dist/src-bin (from source):"
	@$(VENV_PY) build/launchers.py dist/src-bin
	@echo "building dist/bin (standalone executables):"
	@$(VENV_PY) build/standalone.py dist/bin

# The main job: a throwaway "container" joins a network, is reached, and is removed.
demo: bin
	@$(VENV_PY) -m conformance.demo --cni-path $(CURDIR)/dist/bin

# The whole test suite (unit, integration, conformance).
test: bin
	@$(VENV_PY) -m pytest $(PYTEST_ARGS)

install: bin
	@$(VENV_PY) build/install.py dist/bin $(DESTDIR)
	@$(VENV_PY) build/install.py --units build/systemd $(UNITDIR) $(DESTDIR)

# Ours against the reference plugins in /usr/lib/cni, alternating, in one run.
# (matplotlib, for the plot of the scale run `$(VENV_PY) -m conformance.bench --scale`, goes into .venv.)
bench: bin
	@.venv/bin/pip install -q --disable-pip-version-check -e '.[test,bench]'
	@$(VENV_PY) -m conformance.bench

clean:
	rm -rf dist .venv .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
