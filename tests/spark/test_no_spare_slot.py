"""TensorFlowOnSpark's standard set-up -- 2 executors x 1 core, a TF cluster of 2 -- trains
Spark-fed data: the data is the TF cluster's own stage input (``feed_mode="stage"``, chosen
because no slot is free for a feeding job), and every row is still trained once per epoch."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from tfspark.testing.spark import StandaloneCluster

JOB = os.path.join(os.path.dirname(__file__), "no_spare_slot_job.py")


def test_two_single_core_executors_train_two_workers_on_fed_data(tmp_path):
    with StandaloneCluster(str(tmp_path / "spark"), num_workers=2, cores_per_worker=1,
                           memory_per_worker="2g") as cluster:
        env = dict(os.environ, PYSPARK_PYTHON=sys.executable, SPARK_LOCAL_IP="127.0.0.1",
                   PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        done = subprocess.run([sys.executable, JOB, cluster.master_url, str(tmp_path)], env=env,
                              capture_output=True, text=True, timeout=600, cwd=tmp_path)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-6000:]
    result = json.loads(lines[0][len("RESULT "):])
    assert result["slots"] == 2  # no slot beyond the 2 TF nodes'
    # every fed row trained exactly once per epoch, by MWMS workers in lock step
    for node in result["trained"]:
        assert node["epochs"] == result["expected"]
        assert node["steps"] == result["trained"][0]["steps"]
        assert node["weights"] == result["trained"][0]["weights"]
    assert "one train() call" in result["second_train"]
    assert "feed_mode='job'" in result["inference"]
    # a Spark ML pipeline fits on the same 2 slots, with validation rows held out
    assert [h["epoch"] for h in result["history"]] == [1, 2]
    assert all("val_loss" in h for h in result["history"])
    assert result["scored"] == 200
