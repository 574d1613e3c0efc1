# Set-up and the two main jobs. Every target is idempotent.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.qriff-installed

.PHONY: demo test bench system-deps lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch pinned to the CPU wheel first, so nothing later pulls a CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[train,eval,soundfont,test,ray,serve,recsim]'
	# the docs extra: mkdocs and its Material theme, for the strict docs build in make test
	$(PY) -m pip install -q -e '.[docs]'
	touch $(STAMP)

## demo: create .venv, install, generate a clip with the shipped model into demo/
demo: $(STAMP)
	$(VENV)/bin/qriff generate --out demo --format both

## test: create .venv, install, run the whole test suite
test: $(STAMP)
	$(VENV)/bin/mypy
	$(PY) -m pytest -q
	# the documentation (mkdocs.yml, docs/) into site/: a broken link, image or anchor fails the build
	# (no --quiet: it hides the warnings that --strict turns into a failure; tests/test_docs_build.py)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

## system-deps: Debian packages the tests use (FluidSynth, Pure Data, liblo, DPF); needs root
system-deps:
	bash .ci/system-deps

## bench: the benchmark scripts (needs the bench extra and recbole's MovieLens copy)
bench: $(STAMP)
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) -m pip install -q --no-deps recbole==1.2.1
	$(PY) bench/run_all.py

lint: $(STAMP)
	$(VENV)/bin/ruff check engine bridge recommender tests bench

clean:
	rm -rf $(VENV) demo build *.egg-info
	rm -rf site
