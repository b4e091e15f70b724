"""Shared fixtures: a real Spark standalone cluster (master + 2 workers on 127.0.0.1)."""
from __future__ import annotations

import os
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
def spark(standalone_cluster):
    """A SparkSession on the standalone cluster: 2 executors x 2 cores = 4 task slots."""
    from pyspark.sql import SparkSession
    session = (SparkSession.builder.master(standalone_cluster.master_url)
               .appName("tfspark-tests")
               .config("spark.driver.host", "127.0.0.1")
               .config("spark.driver.bindAddress", "127.0.0.1")
               .config("spark.executor.cores", "2")
               .config("spark.executor.memory", "1g")
               .config("spark.ui.enabled", "false")
               .config("spark.executorEnv.TF_CPP_MIN_LOG_LEVEL", "2")
               .getOrCreate())
    yield session
    session.stop()


@pytest.fixture(scope="session")
def sc(spark):
    return spark.sparkContext
