# The two commands of the README:
#   make book   set everything up and build the website into _build/html
#   make test   set everything up and run the whole test suite (what .ci/run calls)
# Other targets:
#   make notebooks   re-execute every chapter in the reference environment and store its outputs
#   make test-envs   the notebooks in the reference environment, then every chapter in a
#                    Colab-like runtime, in Binder's environment and on the declared floors
#                    (fresh virtual environments); CI runs it after make test
#   make test-matrix run the notebooks and library tests under every kernel setting (maintainers)
#   make setup       only create .venv and install the pinned requirements
#   make evidence    run every claim on the claim seeds under two kernel settings and write
#                    the book's evidence page (book/evidence.md; about 15 minutes on 2 cores)
#   make bench       measure the course's speed against its budgets (~15 min on 2 cores):
#                    writes _build/bench/results.md and results.json, fails on a missed budget.
#                    Pass options with BENCH_ARGS, e.g. make bench BENCH_ARGS="--skip-tests"

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb))

# PyTorch and MKL pick their kernels per CPU and per thread count, so the last bits of a
# computation differ between machines, and training runs amplify them. The reference
# environment uses kernels every x86-64 CPU has, MKL's reproducible code path and one thread:
# the stored outputs come from it (make notebooks), so anyone can reproduce the site's numbers.
REFERENCE_ENV := ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
# Settings `make test-matrix` runs under, besides this machine's defaults (each a different
# choice of kernels: generic, MKL's compatible path, AVX2 only, one or two threads).
MATRIX := "ATEN_CPU_CAPABILITY=default" "MKL_CBWR=COMPATIBLE" "ATEN_CPU_CAPABILITY=avx2" \
          "OMP_NUM_THREADS=1 MKL_NUM_THREADS=1" "OMP_NUM_THREADS=2 MKL_NUM_THREADS=2" \
          "$(REFERENCE_ENV)"

.PHONY: setup book test test-library test-browser test-envs test-matrix notebooks evidence bench clean chromium

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

# The whole suite in two runs side by side (under 10 minutes on 2 cores): the library tests,
# every claim on the claim seeds and the notebooks, with this machine's own kernels, on both
# cores; and the browser tests (the book build, the static site in Chromium, a chapter in a
# live JupyterLab), which share one built book and mostly wait on the browser. Each run's
# output is printed when it ends.
BROWSER_TESTS := tests/test_book.py tests/test_site.py tests/test_live_kernel.py
test: $(STAMP) chromium
	$(MAKE) --no-print-directory -j2 --output-sync=target test-library test-browser

test-library: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider -n 2 --dist loadfile \
		$(foreach t,$(BROWSER_TESTS),--ignore=$(t))

test-browser: $(STAMP) chromium
	$(BIN)/python -m pytest -p no:cacheprovider $(BROWSER_TESTS)

# Where else the course must run (CI runs it after make test): the notebooks again in the
# reference environment, so a stored number that only one machine prints fails here instead
# of on an instructor's machine; then the learners' environments (tests/test_environments.py),
# each a fresh virtual environment built from its own file (tests/envs/colab.txt, binder/,
# tests/envs/floors.txt) that runs every chapter, the Colab-like one as downloaded from the
# built site.
test-envs: $(STAMP) book
	env $(REFERENCE_ENV) $(BIN)/python -m pytest -p no:cacheprovider -n 2 --dist loadfile notebooks
	$(BIN)/python -m pytest -p no:cacheprovider --envs -n 2 --dist loadfile tests/test_environments.py

# Maintainers: notebooks and library tests (not the browser tests) under every setting.
test-matrix: $(STAMP)
	@for setting in "" $(MATRIX); do \
		echo "=== kernel setting: $${setting:-this machine's defaults}"; \
		env $$setting $(BIN)/python -m pytest -q -p no:cacheprovider notebooks tests \
			--ignore=tests/test_site.py --ignore=tests/test_live_kernel.py || exit 1; \
	done

# The browser tests (tests/test_site.py) drive Debian's Chromium; Playwright never downloads
# a browser here. Install it when it is missing and we are root (CI on a clean machine), else
# say how. A machine that has it (or sets CHROMIUM_PATH) never calls apt.
chromium:
	@if [ -n "$$CHROMIUM_PATH" ] && [ -x "$$CHROMIUM_PATH" ]; then exit 0; fi; \
	if [ -x /usr/bin/chromium ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
		echo "Installing Debian's chromium for the browser tests..."; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei; \
	else \
		echo "The browser tests need Chromium: sudo apt-get install chromium" \
		     "(or set CHROMIUM_PATH to a Chromium binary)." >&2; \
		exit 1; \
	fi

evidence: $(STAMP)
	$(BIN)/python -m tools.evidence run
	$(BIN)/python -m tools.evidence page

notebooks: $(STAMP)
	env $(REFERENCE_ENV) $(BIN)/python -m tools.notebooks execute $(NOTEBOOKS)

# A maintainer tool like `make notebooks`: what to measure and the budgets are documented in
# tools/benchmark.py; options: --quick, --skip-tests, --only SECTION (repeatable).
bench: $(STAMP)
	$(BIN)/python -m tools.benchmark $(BENCH_ARGS)

clean:
	rm -rf _build .pytest_cache .hypothesis
