# Everything a fresh Debian machine with python3 and node needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test venv clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,notebook,pprof,fleet,fast]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m nodeflame.demo

# two pytest-xdist workers, a test file per worker at a time (the longest first: tests/conftest.py), then the
# tests marked solo, which need the machine to themselves (the stap VM, perf's shares, the default inspector
# port), one after another.  Both parts always run; the target fails if either does (exit 5, no test
# collected, is a failure too); each says why a test skipped (-rsx: a machine without perf, or one too busy
# for a truth to be measured).  One test after another instead: `.venv/bin/python -m pytest -q`.
# Bytecode is cached even where the environment says not to (PYTHONDONTWRITEBYTECODE=1: this build
# machine sets it): each worker, the solo run and every python the tests start would otherwise compile nodeflame
# and re-write the tests' asserts again (collection: 6.5 CPU-s a process without the cache, 3.2 with it).
test: export PYTHONDONTWRITEBYTECODE =
test: $(STAMP)
	$(BIN)/python -m pytest -q -rsx -n 2 --dist loadfile -m 'not solo'; a=$$?; \
	$(BIN)/python -m pytest -q -rsx -m solo; b=$$?; \
	echo "make test: two workers exit $$a, solo tests exit $$b"; [ $$a -eq 0 ] && [ $$b -eq 0 ]

clean:
	rm -rf $(VENV)
