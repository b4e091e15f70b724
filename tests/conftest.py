"""Shared fixtures: a real Spark standalone cluster (master + 2 workers on 127.0.0.1) and a real
single-node HDFS + YARN (tfspark.testing.hadoop), each started once per session on first use
and stopped at the end, also when tests fail.

Set TFSPARK_TEST_HADOOP_DIR to the --dir of a cluster started with
`python -m tfspark.testing.hadoop start --dir DIR` to reuse it instead (it is left running).
"""
from __future__ import annotations

import os
import shutil
import sys

import pytest

# Executors must run this interpreter (it has TensorFlow); set before any SparkContext starts.
os.environ["PYSPARK_PYTHON"] = sys.executable
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def standalone_cluster(tmp_path_factory):
    from tfspark.testing.spark import StandaloneCluster
    with StandaloneCluster(str(tmp_path_factory.mktemp("spark-standalone")), num_workers=2,
                           cores_per_worker=2) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def single_core_cluster(tmp_path_factory):
    """TensorFlowOnSpark's standard set-up: a standalone cluster of 2 workers x 1 core, for
    drivers run as subprocesses (this process's SparkContext holds the other cluster)."""
    from tfspark.testing.spark import StandaloneCluster
    with StandaloneCluster(str(tmp_path_factory.mktemp("spark-single-core")), num_workers=2,
                           cores_per_worker=1, memory_per_worker="2g") as cluster:
        yield cluster


def run_driver(script, *args, cwd, timeout=600):
    """Run a test driver script in its own process (its own SparkContext); return its
    ``RESULT {...}`` line as a dict, or fail with its output."""
    import json
    import subprocess
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, SPARK_LOCAL_IP="127.0.0.1",
               PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    env.pop("SPARK_REMOTE", None)
    done = subprocess.run([sys.executable, script, *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout, cwd=cwd)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stdout[-4000:] + done.stderr[-8000:]
    return json.loads(lines[0][len("RESULT "):]), done


@pytest.fixture(scope="session")
def spark(standalone_cluster):
    """A SparkSession on the standalone cluster: 2 executors x 2 cores = 4 task slots."""
    from pyspark.sql import SparkSession
    session = (SparkSession.builder.master(standalone_cluster.master_url)
               .appName("tfspark-tests")
               .config("spark.driver.host", "127.0.0.1")
               .config("spark.driver.bindAddress", "127.0.0.1")
               .config("spark.executor.cores", "2")
               .config("spark.cores.max", "4")  # the settings tell tfspark the slots
               .config("spark.executor.memory", "1g")
               .config("spark.ui.enabled", "false")
               .config("spark.executorEnv.TF_CPP_MIN_LOG_LEVEL", "2")
               .getOrCreate())
    yield session
    session.stop()


@pytest.fixture(scope="session")
def sc(spark):
    return spark.sparkContext


@pytest.fixture(scope="session")
def hadoop_cluster(tmp_path_factory):
    reuse = os.environ.get("TFSPARK_TEST_HADOOP_DIR")
    from tfspark.testing.hadoop import HadoopCluster
    if reuse:
        yield HadoopCluster.from_state(reuse)
        return
    if not shutil.which("java"):  # never skip: a missing JDK is a broken set-up, not a pass
        pytest.fail("the Hadoop fixtures need `java` (Java 17) on PATH")
    cluster = HadoopCluster(tmp_path_factory.mktemp("hadoop"), yarn=True)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def hdfs_cluster(hadoop_cluster):
    """The shared cluster, for tests that use only HDFS."""
    return hadoop_cluster


@pytest.fixture(scope="session")
def yarn_cluster(hadoop_cluster):
    """The shared cluster, for tests that submit to YARN."""
    return hadoop_cluster


@pytest.fixture
def hadoop_env(hadoop_cluster, monkeypatch):
    """HADOOP_CONF_DIR & co. of the shared cluster set for one test."""
    for key, value in hadoop_cluster.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("HADOOP_USER_NAME", raising=False)
    return hadoop_cluster.env()


def read_tree(root):
    """{relative path: bytes, or None for a directory} of everything under ``root``."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for d in dirnames:
            found[os.path.normpath(os.path.join(rel, d))] = None
        for f in filenames:
            with open(os.path.join(dirpath, f), "rb") as fh:
                found[os.path.normpath(os.path.join(rel, f))] = fh.read()
    return found
