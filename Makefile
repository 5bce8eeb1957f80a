# The two commands of the README:
#   make book   set everything up and build the website into _build/html
#   make test   set everything up and run the whole test suite (what .ci/run calls)
# Other targets:
#   make notebooks   re-execute every chapter and store its outputs (commit the result)
#   make setup       only create .venv and install the pinned requirements

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb))

.PHONY: setup book test notebooks clean

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

test: $(STAMP)
	$(BIN)/python -m pytest

notebooks: $(STAMP)
	$(BIN)/python -m course_lib.devtools execute $(NOTEBOOKS)

clean:
	rm -rf _build .pytest_cache .hypothesis
