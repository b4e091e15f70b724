# Set-up and entry points. `make demo` runs the main job, `make test` the test suite; both
# create the virtualenv $(VENV) and install the pinned dependencies on first use.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tfspark-installed

DEMO_DIR ?= $(CURDIR)/.demo

.PHONY: demo quickstart test unit venv clean

venv: $(STAMP)

$(STAMP): requirements-pinned.txt setup.cfg setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-pinned.txt -e .
	touch $@

# The MNIST example on an embedded local Spark with local paths: data -> train -> inference.
demo: $(STAMP)
	$(PY) examples/mnist/mnist_data_setup.py --output file://$(DEMO_DIR)/data
	$(PY) examples/mnist/mnist_spark.py --cluster_size 2 --epochs 5 \
	    --images_labels file://$(DEMO_DIR)/data/train --export_dir file://$(DEMO_DIR)/export
	$(PY) examples/mnist/mnist_inference.py --export_dir file://$(DEMO_DIR)/export \
	    --images_labels file://$(DEMO_DIR)/data/test --output file://$(DEMO_DIR)/predictions

# A one-minute MultiWorkerMirroredStrategy regression on 2 local workers.
quickstart: $(STAMP)
	$(PY) examples/mwms_regression.py

test: $(STAMP)
	$(PY) -m pytest -q -rs --durations=15 tests

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

clean:
	rm -rf $(VENV) $(DEMO_DIR) build *.egg-info .pytest_cache
