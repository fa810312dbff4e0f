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

# one test after another: on two pytest-xdist workers (`pytest -n 2 --dist loadfile -m 'not solo'`, then
# `pytest -m solo`) the suite takes 10.5-15 min at load 4.5-6 instead of ~15 idle; it becomes the default
# after three clean-clone runs in a row pass beside stress-ng --cpu 1 (one so far: see README)
test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV)
