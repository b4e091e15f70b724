"""tfspark from a Spark Connect session: a local Connect server from pip's pyspark.

The job runs in its own driver process (a Connect server cannot share the test session's JVM);
each check is on what the user gets: trained models, rows fed, records read back, and clear
errors for what Connect cannot do.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

JOB = os.path.join(os.path.dirname(__file__), "connect_job.py")


def test_tfspark_runs_from_a_spark_connect_session(tmp_path, connect_server):
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, SPARK_LOCAL_IP="127.0.0.1",  # loopback
               PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    env.update(connect_server["env"])  # the session's local Connect server
    done = subprocess.run([sys.executable, JOB, str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=500, cwd=tmp_path)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-5000:]
    result = json.loads(lines[0][len("RESULT "):])
    assert result["session"].startswith("pyspark.sql.connect")
    assert result["driver_host"] in ("127.0.0.1", "localhost")  # loopback only
    # MWMS trained in a barrier stage started through Connect (mapInArrow(barrier=True))
    assert result["weights_equal"]
    assert all(loss[-1] < loss[0] for loss in result["loss"])
    assert "worker:1 trained" in done.stdout  # node output streamed to the client
    assert sum(result["fed_rows"]) == 300 and min(result["fed_rows"]) == 150
    assert result["read_back"] == [2 * i for i in range(50)]
    # one fs.defaultFS rule: the session's, for tfspark.fs and for the TF cluster alike
    assert result["default_fs"] == {"fs": "hdfs://namenode.example:8020",
                                    "backend": "hdfs://namenode.example:8020",
                                    "resolved": "hdfs://namenode.example:8020/user/alice/data/x"}
    # tfspark.predict scores a DataFrame from a Connect client (an Arrow UDF)
    assert result["predict"]["columns"] == ["id", "x", "y"]
    assert result["predict"]["max_error"] < 1e-5
    assert "Spark Connect has no RDDs" in result["errors"]["inference"]
    assert "data must be an RDD or a DataFrame" in result["errors"]["not_data"]
    # ParameterServerStrategy: the chief coordinates 1 ps + 1 worker; the ps is stopped after
    assert len(result["pss"][1]) == 2 and result["pss"][0] is None
    assert [h["epoch"] for h in result["pss_history"]] == [1, 2]  # progress: epochs under PSS
    # Detached: executors cannot reach the client. Said once; training still runs; output,
    # progress and errors come back with the stage's output.
    assert done.stderr.count("the executors cannot reach this Spark Connect client") == 1
    assert result["detached_weights_equal"]
    assert [h["epoch"] for h in result["detached_history"]] == [1, 2, 3]
    assert "feed_mode='stage'" in result["detached_spark_input"]
    assert result["detached_fed_rows"] == [45, 45]  # Spark-fed in the stage, detached
    error = result["detached_error"]
    assert "worker 1 gives up" in error["text"] and "ValueError" in error["traceback"]
    assert "worker:1 about to fail" in error["output"]
    pss_chief_loss = result["detached_pss"][1]  # worker_num 0 is the ps, 1 the chief
    assert len(pss_chief_loss) == 2 and result["detached_pss"][0] is None  # ps stopped
