"""Session fixtures: one real single-node HDFS + YARN cluster (tfspark.testing.hadoop).

The cluster starts once per test session under pytest's tmp dir and is stopped at the end,
also when tests fail.  Set TFSPARK_TEST_HADOOP_DIR to the --dir of a cluster started with
`python -m tfspark.testing.hadoop start --dir DIR` to reuse it instead (it is left running).
"""
from __future__ import annotations

import os
import shutil

import pytest

from tfspark.testing.hadoop import HadoopCluster


@pytest.fixture(scope="session")
def hadoop_cluster(tmp_path_factory):
    reuse = os.environ.get("TFSPARK_TEST_HADOOP_DIR")
    if reuse:
        yield HadoopCluster.from_state(reuse)
        return
    if not shutil.which("java"):
        pytest.skip("Hadoop integration tests need `java` on PATH")
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
