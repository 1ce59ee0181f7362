# The README's two commands are `make demo` and `make test`; each sets up what it needs.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: setup browser demo test test-all lint bench train clean

setup: $(STAMP)

# torch is pinned and installed first: an unpinned torch would pull a multi-GB CUDA build.
# pip's own chatter (and this machine's index warnings) goes to $(VENV)/setup.log; the log's
# tail is printed when a step fails, so what is shown here is the project's own lines.
SETUP_LOG := $(VENV)/setup.log
PIP := $(PY) -m pip install -q --disable-pip-version-check

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@: > $(SETUP_LOG)
	@echo "setup: pip"; $(PIP) --upgrade pip >> $(SETUP_LOG) 2>&1 || { tail -n 40 $(SETUP_LOG); exit 1; }
	@echo "setup: torch==2.13.0 (CPU, installed first)"; $(PIP) torch==2.13.0 >> $(SETUP_LOG) 2>&1 || { tail -n 40 $(SETUP_LOG); exit 1; }
	@echo "setup: explainer and its dependencies (.[dev,ray])"; $(PIP) -e '.[dev,ray]' >> $(SETUP_LOG) 2>&1 || { tail -n 40 $(SETUP_LOG); exit 1; }
	@$(PY) -c "import torch, sys; v = torch.__version__; sys.exit(0 if v.startswith('2.13.0') else 'torch was replaced: ' + v)"
	@touch $(STAMP)
	@echo "setup: done (pip output in $(SETUP_LOG))"

# Browser tests drive Debian's chromium with playwright (which cannot download browsers here).
# Installed when missing if we may (root, or passwordless sudo); CI must have it.
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then SUDO=""; \
	  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	  else SUDO=none; fi; \
	  if [ "$$SUDO" != none ]; then \
	    echo "installing Debian chromium for the browser tests (apt-get)"; \
	    $$SUDO apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null 2>&1 || { echo "apt-get install chromium failed"; exit 1; }; \
	  elif [ -n "$$CI" ]; then echo "chromium is missing and cannot be installed (need root)"; exit 1; \
	  else echo "note: browser tests will be skipped: install chromium (sudo apt-get install chromium)"; fi; \
	fi

demo: setup
	$(VENV)/bin/explainer demo --out reports/demo.html

# pytest exits 5 when it collects no test: that is not a failure of the project.
test: setup browser
	$(PY) -m pytest -q -n auto -m "not slow" --nbmake --doctest-modules tests notebooks explainer $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then exit 0; else exit $$rc; fi

test-all: setup browser
	$(PY) -m pytest -q -n auto --nbmake --doctest-modules tests notebooks explainer $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then exit 0; else exit $$rc; fi

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
