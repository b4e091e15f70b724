"""The streaming example end to end, as a user runs it: a real Kafka broker (KRaft, from Maven
Central), Spark's Kafka connector, the real HDFS for the query's checkpoint, the backup and the
SavedModel versions; training on one topic while a second query scores another topic with the
newest version."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "streaming",
                       "kafka_streaming.py")


def test_kafka_to_continuous_training_to_versions_on_hdfs_to_scoring(
        kafka_broker, hdfs_cluster, hadoop_cluster, hadoop_env, tmp_path):
    from tfspark import fs
    base = f"{hdfs_cluster.default_fs}/tests/streaming-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, **hadoop_cluster.env(), PYSPARK_PYTHON=sys.executable,
               SPARK_LOCAL_IP="127.0.0.1",
               PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    env.pop("HADOOP_USER_NAME", None)
    env.pop("SPARK_HOME", None)
    topic = f"train-{uuid.uuid4().hex[:6]}"
    done = subprocess.run(
        [sys.executable, EXAMPLE, "--bootstrap", kafka_broker.bootstrap, "--base", base,
         "--topic", topic, "--score_topic", f"score-{topic}", "--produce", "2000",
         "--master", "local[4]"],
        env=env, capture_output=True, text=True, timeout=600, cwd=str(tmp_path))
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stdout[-4000:] + done.stderr[-8000:]
    result = json.loads(lines[0][len("RESULT "):])
    # every record trained once, in consecutive micro-batches of at most 500 records
    assert result["trained_rows"] == 2000
    batches = result["micro_batches"]
    assert batches == list(range(len(batches))) and len(batches) >= 4
    # versions on HDFS, published whole; the scoring query used them and says which
    versions = sorted(int(v) for v in fs.listdir(f"{base}/export"))
    assert versions == list(range(1, len(batches) // 2 + 1))
    assert result["version"].endswith(f"/export/{versions[-1]}")
    assert result["scored_rows"] == 500
    assert set(map(int, result["scored_by_version"])) <= set(versions)
    assert result["mse"] < 1.0  # learned: predicting the mean would give about 14
