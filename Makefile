# The two commands of the README:
#   make book   set everything up and build the website into _build/html
#   make test   set everything up and run the whole test suite (what .ci/run calls)
# Other targets:
#   make notebooks   re-execute every chapter and store its outputs (commit the result)
#   make setup       only create .venv and install the pinned requirements
#   make bench       measure the course's speed against its budgets (~15 min on 2 cores):
#                    writes _build/bench/results.md and results.json, fails on a missed budget.
#                    Pass options with BENCH_ARGS, e.g. make bench BENCH_ARGS="--skip-tests"

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb))

.PHONY: setup book test notebooks bench clean chromium

setup: $(STAMP)

# Reinstall whenever the pins or the package metadata change.
$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $(STAMP)

book: $(STAMP)
	$(BIN)/jupyter-book build . --warningiserror --nitpick --keep-going
	@echo "Open _build/html/index.html in a browser."

test: $(STAMP) chromium
	$(BIN)/python -m pytest

# The browser tests (tests/test_site.py) drive Debian's Chromium; Playwright never downloads
# a browser here. Install it when it is missing and we are root (CI on a clean machine), else
# say how. A machine that has it (or sets CHROMIUM_PATH) never calls apt.
chromium:
	@if [ -n "$$CHROMIUM_PATH" ] && [ -x "$$CHROMIUM_PATH" ]; then exit 0; fi; \
	if [ -x /usr/bin/chromium ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
		echo "Installing Debian's chromium for the browser tests..."; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else \
		echo "The browser tests need Chromium: sudo apt-get install chromium" \
		     "(or set CHROMIUM_PATH to a Chromium binary)." >&2; \
		exit 1; \
	fi

notebooks: $(STAMP)
	$(BIN)/python -m tools.notebooks execute $(NOTEBOOKS)

# A maintainer tool like `make notebooks`: what to measure and the budgets are documented in
# tools/benchmark.py; options: --quick, --skip-tests, --only SECTION (repeatable).
bench: $(STAMP)
	$(BIN)/python -m tools.benchmark $(BENCH_ARGS)

clean:
	rm -rf _build .pytest_cache .hypothesis
