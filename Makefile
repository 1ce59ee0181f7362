# The README's two commands are `make demo` and `make test`; each sets up what it needs.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: setup browser demo test test-all lint bench train clean

setup: $(STAMP)

# torch is pinned and installed first: an unpinned torch would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev,ray]'
	touch $(STAMP)

# Browser tests drive Debian's chromium with playwright (which cannot download browsers here).
# Installed when missing if we may (root, or passwordless sudo); CI must have it.
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then SUDO=""; \
	  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	  else SUDO=none; fi; \
	  if [ "$$SUDO" != none ]; then \
	    echo "installing Debian chromium for the browser tests (apt-get)"; \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; \
	  elif [ -n "$$CI" ]; then echo "chromium is missing and cannot be installed (need root)"; exit 1; \
	  else echo "note: browser tests will be skipped: install chromium (sudo apt-get install chromium)"; fi; \
	fi

demo: setup
	$(VENV)/bin/explainer demo --out reports/demo.html

# pytest exits 5 when it collects no test: that is not a failure of the project.
test: setup browser
	$(PY) -m pytest -q -m "not slow" --nbmake tests notebooks $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then exit 0; else exit $$rc; fi

test-all: setup browser
	$(PY) -m pytest -q --nbmake tests notebooks $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then exit 0; else exit $$rc; fi

lint: setup
	$(VENV)/bin/ruff check explainer tests
	$(VENV)/bin/ruff format --check explainer tests

# Every benchmark side by side with captum/shap in one run -> reports/bench.json, bench.html.
bench: setup
	$(PY) -m benchmarks.run_all --out reports

train: setup
	$(PY) -m explainer.demo.train

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
