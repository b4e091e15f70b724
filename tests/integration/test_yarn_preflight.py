"""On the real YARN: executors that cannot all be granted end TFCluster.run within
reservation_timeout, with an error in YARN's words (executors asked/granted, container size,
what the ResourceManager has free) -- not advice about cores."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow

DRIVER = textwrap.dedent("""
    import time
    from pyspark.sql import SparkSession
    from tfspark import TFCluster
    from tfspark.errors import PreflightError

    spark = SparkSession.builder.getOrCreate()
    started = time.monotonic()
    try:
        TFCluster.run(spark.sparkContext, lambda args, ctx: None, None, 3,
                      reservation_timeout=12)
        print("RESULT started")
    except PreflightError as e:
        print(f"RESULT after {time.monotonic() - started:.0f}s: {e}")
    finally:
        spark.stop()
""")


def test_executors_yarn_cannot_grant_fail_in_yarns_words(yarn_cluster, tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    # the NodeManager has 8 GB: the AM and one 5 GB executor fit, the other two never do
    conf = dict(yarn_cluster.spark_yarn_conf(), **{
        "spark.submit.deployMode": "client", "spark.executor.instances": "3",
        "spark.executor.cores": "1", "spark.executor.memory": "3g",
        "spark.executor.memoryOverhead": "2g", "spark.dynamicAllocation.enabled": "false",
        "spark.ui.enabled": "false"})
    cmd = [os.path.join(os.path.dirname(sys.executable), "spark-submit")]
    for key, value in conf.items():
        cmd += ["--conf", f"{key}={value}"]
    env = dict(os.environ, **yarn_cluster.env(), PYSPARK_PYTHON=sys.executable,
               SPARK_LOCAL_IP="127.0.0.1")
    for name in ("HADOOP_USER_NAME", "SPARK_HOME"):
        env.pop(name, None)
    proc = subprocess.run(cmd + [str(script)], env=env, cwd=str(tmp_path), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    result = next((line for line in proc.stdout.splitlines() if line.startswith("RESULT")),
                  None)
    assert result is not None, proc.stdout[-3000:]
    assert "YARN granted 1 of the 3 executors" in result, result
    assert "asks for 5120 MB (spark.executor.memory 3072 MB + memoryOverhead 2048 MB)" in result
    assert "MB available, at most" in result and "running NodeManagers" in result, result
    assert "executor cores /" not in result  # no advice about cores: they were not the cause
    waited = int(result.split("after ", 1)[1].split("s:", 1)[0])
    assert 12 <= waited <= 22, result
