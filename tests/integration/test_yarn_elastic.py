"""On the real YARN: executors lost for good -- their containers killed while the NodeManager
is shrunk below what runs on it, so YARN grants no replacement, as when a machine is gone.
ParameterServerStrategy trains on without the lost worker; MultiWorkerMirroredStrategy
restarts on the workers it can get (``min_workers``)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

JOB = os.path.join(os.path.dirname(__file__), "yarn_elastic_job.py")


@pytest.fixture(scope="module")
def yarn_elastic(yarn_cluster, tmp_path_factory):
    from tfspark.testing.spark import NodeKiller, kill_executor_above
    work = tmp_path_factory.mktemp("yarn-elastic")

    def lose_executor(pid: int) -> bool:
        used_mb, used_vcores = yarn_cluster.node_usage()
        yarn_cluster.set_node_resource(used_mb - 1, max(1, used_vcores - 1))
        return kill_executor_above(pid)

    conf = dict(yarn_cluster.spark_yarn_conf(), **{
        "spark.submit.deployMode": "client", "spark.executor.instances": "4",
        "spark.executor.cores": "1", "spark.executor.memory": "1g",
        "spark.dynamicAllocation.enabled": "false", "spark.ui.enabled": "false"})
    cmd = [os.path.join(os.path.dirname(sys.executable), "spark-submit")]
    for key, value in conf.items():
        cmd += ["--conf", f"{key}={value}"]
    env = dict(os.environ, **yarn_cluster.env(), PYSPARK_PYTHON=sys.executable,
               SPARK_LOCAL_IP="127.0.0.1",
               PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    for name in ("HADOOP_USER_NAME", "SPARK_HOME"):
        env.pop(name, None)
    try:
        with NodeKiller(str(work), lose_executor) as killer:
            job = subprocess.run(cmd + [JOB, str(work)], env=env, cwd=str(work), text=True,
                                 capture_output=True, timeout=900)
    finally:
        yarn_cluster.restore_node_resource()
    lines = [line for line in job.stdout.splitlines() if line.startswith("RESULT ")]
    assert not killer.errors and job.returncode == 0 and lines, (
        f"{killer.errors}\n{job.stdout[-3000:]}\n{job.stderr[-6000:]}")
    # spark-submit's PythonRunner merges the driver's stderr into its stdout
    return json.loads(lines[0][len("RESULT "):]), job.stdout + job.stderr


def test_pss_on_yarn_trains_on_without_a_worker_whose_container_is_gone(yarn_elastic):
    result, output = yarn_elastic[0]["pss"], yarn_elastic[1]
    assert result["attempts"] == [[2, ["worker:1"]]]  # no restart
    assert result["results"][1] == 5  # the chief's epochs
    assert "worker:1's executor on host" in output and "training goes on with 1 of 2" in output


def test_mwms_on_yarn_restarts_on_the_workers_yarn_still_grants(yarn_elastic):
    result, output = yarn_elastic[0]["mwms"], yarn_elastic[1]
    assert [a[0] for a in result["attempts"]] == [3, 2]
    assert "continuing on 2 of 3 workers: worker:2's executor on host" in output
    workers, epochs = {r["workers"] for r in result["results"]}, result["results"][0]["epochs"]
    assert workers == {2} and epochs == [2, 3, 4, 5]  # after the backed-up epoch 1
