# The two commands a reader needs: `make book` (HTML in _build/html) and `make test` (all tests).
# Each creates $(VENV) on first use and installs the pinned CPU environment from requirements/.
# For contributors: `make test-package` (the package tests only, in parallel: the quick loop) and `make lint`.

PYTHON ?= python3
VENV ?= .venv
# Extra pytest arguments, e.g. `make test PYTEST_ARGS="-n auto -x"`.
PYTEST_ARGS ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
REQUIREMENTS := $(wildcard requirements/*.txt)
PIP_INSTALL := $(BIN)/python -m pip install -c requirements/constraints.txt

.PHONY: venv book test test-package lint release-check clean distclean

venv: $(STAMP)

# The stamp is newer than pyproject.toml and requirements/*.txt once they are installed, so a second
# `make` does not reinstall; editing any of them reinstalls (pip skips what is already satisfied).
$(STAMP): pyproject.toml $(REQUIREMENTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) -r requirements/cpu.txt
	$(PIP_INSTALL) -e ".[book,test,release]"
	touch $@

book: venv
	$(BIN)/jupyter-book build . --builder html --warningiserror --nitpick --keep-going

# Every test, in two runs: the package tests under tests/ on every core (pytest-xdist), then, one at
# a time, every notebook under book/ (nbval-lax: a notebook passes when every cell runs without
# error; outputs are not compared; one at a time because some pages time code and assert its
# scaling) and tests/test_site.py. --nbval-current-env runs the notebooks in $(VENV) whatever kernel
# their metadata names. tests/test_site.py drives headless Chromium over the built site in
# _build/html (building it first if a page is missing); without a Chromium it skips, unless CI=true.
# Its screenshots land in _build/screenshots/.
test: venv
	$(BIN)/python -m pytest -p no:cacheprovider tests -n auto --ignore=tests/test_site.py $(PYTEST_ARGS)
	$(BIN)/python -m pytest -p no:cacheprovider book tests/test_site.py --nbval-lax --nbval-current-env $(PYTEST_ARGS)

# The quick loop while editing the package: tests/ only, on every core (pytest-xdist), without the notebooks
# and without the browser test of the built site (tests/test_site.py).
test-package: venv
	$(BIN)/python -m pytest -p no:cacheprovider tests -n auto --ignore=tests/test_site.py $(PYTEST_ARGS)

# ruff's lint rules and formatting ([tool.ruff] in pyproject.toml), package, tests and notebooks; changes nothing.
# `$(BIN)/ruff check --fix . && $(BIN)/ruff format .` applies the fixes.
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Build the wheel and sdist into dist/, twine-check them, and install the wheel in a clean venv.
release-check: venv
	bash .ci/release-check $(BIN)/python

clean:
	rm -rf _build .jupyter_cache .pytest_cache .hypothesis build dist *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -print0 | xargs -0 rm -rf

distclean: clean
	rm -rf $(VENV)
