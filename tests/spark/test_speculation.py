"""``spark.speculation=true`` never starts a TF node twice nor writes an output twice.

Spark launches a speculative copy of a task only on another host, so this test runs its own
standalone cluster whose two workers sit on two loopback addresses, and first shows that the
set-up does speculate (a slow first attempt loses to its copy) before checking tfspark's jobs.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

from tfspark.testing.spark import StandaloneCluster

JOB = os.path.join(os.path.dirname(__file__), "speculation_job.py")


def test_speculation_starts_no_tf_node_twice_and_writes_each_output_once(tmp_path):
    with StandaloneCluster(str(tmp_path / "spark"), num_workers=2, cores_per_worker=2,
                           worker_hosts=["127.0.0.2", "127.0.0.3"]) as cluster:
        env = dict(os.environ, PYSPARK_PYTHON=sys.executable, SPARK_LOCAL_IP="127.0.0.1",
                   PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        done = subprocess.run([sys.executable, JOB, cluster.master_url, str(tmp_path)],
                              env=env, capture_output=True, text=True, timeout=400)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-5000:]
    result = json.loads(lines[0][len("RESULT "):])
    assert result["speculated"] == [1]  # the set-up speculates
    assert len(result["parts"]) == 4  # one part per partition, no speculative duplicate
    assert result["ids"] == list(range(400))
    assert sorted(s.split("-")[0] for s in result["starts"]) == ["0", "1"]  # each node once
    assert result["attempts"] == 1
    assert result["versions"] == [1]
    assert result["exported"][0] and result["exported"][0].endswith("/export/1")
