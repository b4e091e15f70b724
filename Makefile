# Set-up and entry points. `make demo` runs the main job, `make test` the test suite; both
# create the virtualenv $(VENV) and install the pinned dependencies on first use.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tfspark-installed

DEMO_DIR ?= $(CURDIR)/.demo

.PHONY: demo quickstart test unit venv clean docker-tools kdc-tools docker-test

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

test: $(STAMP) docker-tools kdc-tools
	$(PY) -m pytest -q -rs --durations=15 tests

# Compose, which the tests use to validate docker/compose.yaml: Debian's docker-compose when
# neither `docker compose` nor `docker-compose` is there (needs root and apt-get).
docker-tools:
	@docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get -qq -o DPkg::Lock::Timeout=600 update && \
	    DEBIAN_FRONTEND=noninteractive apt-get -qq -o DPkg::Lock::Timeout=600 install -y \
	      --no-install-recommends docker-compose >/dev/null; } || \
	  echo "docker-compose is missing: tests/docker/test_docker_files.py will fail" >&2

# MIT Kerberos (KDC, kadmin.local, kinit) for the Kerberized test cluster (tfspark.testing.kdc):
# Debian's packages when krb5kdc is missing (needs root and apt-get).
kdc-tools:
	@command -v krb5kdc >/dev/null || [ -x /usr/sbin/krb5kdc ] || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get -qq -o DPkg::Lock::Timeout=600 update && \
	    DEBIAN_FRONTEND=noninteractive apt-get -qq -o DPkg::Lock::Timeout=600 install -y \
	      --no-install-recommends krb5-kdc krb5-admin-server krb5-user >/dev/null; } || \
	  echo "MIT Kerberos is missing: the Kerberos tests (tests/integration/test_kerberos.py) will fail" >&2

# The image built and the MNIST example run on docker/compose.yaml's cluster, end to end
# (installs and starts a Docker engine when there is none; see docker/test.sh).
docker-test:
	docker/test.sh

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

clean:
	rm -rf $(VENV) $(DEMO_DIR) build *.egg-info .pytest_cache
