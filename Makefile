# Set-up and entry points. `make demo` runs the main job, `make test` the test suite; both
# create the virtualenv $(VENV) and install the pinned dependencies on first use.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tfspark-installed

.PHONY: demo test unit venv clean

venv: $(STAMP)

$(STAMP): requirements-pinned.txt setup.cfg setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-pinned.txt -e .
	touch $@

demo: $(STAMP)
	$(PY) examples/mwms_regression.py

test: $(STAMP)
	$(PY) -m pytest -q -rs --durations=15 tests

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
