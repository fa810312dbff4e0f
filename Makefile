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

# two workers, one test file each at a time; then the tests marked solo alone (the stap VM test: under
# TCG its guest's clock follows the host's, so a second worker's load moves its shares; the perf share
# tests, whose target needs a CPU of its own; the tests of the default inspector port)
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m 'not solo'; a=$$?; \
	$(BIN)/python -m pytest -q -m solo; b=$$?; \
	exit $$(( a ? a : b ))

clean:
	rm -rf $(VENV)
