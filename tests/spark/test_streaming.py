"""Streaming: a TF cluster trains on a Structured Streaming query (file source here; Kafka in
tests/integration/test_kafka_streaming.py), each micro-batch exactly once, and
``tfspark.predict`` scores a stream with the newest published version.

What is trained is counted inside ``train_step`` and kept in the model's own checkpointed
variables (``stream_job.counting_model``), per Spark batch id: a micro-batch trained twice,
skipped, or trained with unequal steps shows in what the job returns.
"""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time

import pytest
from pyspark import cloudpickle

import stream_job
from stream_job import main_fun, pss_main_fun, stream_of, write_parts
from tfspark import InputMode, NodeError, TFCluster, TFSparkError
from tfspark.testing.spark import node_process

cloudpickle.register_pickle_by_value(stream_job)
cloudpickle.register_pickle_by_value(sys.modules[__name__])

BATCH = 8  # per-worker batch


def _trained(results):
    """{batch id: (rows, id sum, steps)} the chief's model holds."""
    chief = next(r for r in results if r["worker"] == 0)
    return {i: (chief["rows"][i], chief["ids"][i], chief["steps"][i])
            for i in range(len(chief["rows"])) if chief["rows"][i]}


def _expected(parts, start=0, first_batch=0):
    """{batch id: (rows, id sum, steps)} for ``parts`` fed one file a micro-batch, each file one
    partition dealt over 2 workers."""
    out = {}
    for batch, size in enumerate(parts, start=first_batch):
        if size:
            out[batch] = (size, sum(range(start, start + size)), math.ceil(math.ceil(size / 2) / BATCH))
        start += size
    return out


def _run(spark, tmp_path, args, max_restarts=2):
    args = dict({"backup": str(tmp_path / "backup"), "batch_size": BATCH}, **args)
    return TFCluster.run(spark, main_fun, args, 2, input_mode=InputMode.SPARK,
                         feed_mode="job", max_restarts=max_restarts)


def _await(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_each_micro_batch_is_trained_once_versions_publish_and_a_replay_is_skipped(
        spark, tmp_path):
    # tiny (fewer rows than workers), empty, and across the feed's 4096-row Arrow chunks
    parts = [10, 7, 1, 0, 5000, 25]
    source, checkpoint, export = tmp_path / "in", str(tmp_path / "ck"), tmp_path / "export"
    end = write_parts(str(source), parts)
    cluster = _run(spark, tmp_path, {"export": str(export), "export_every": 2, "slow_at": 1})
    training = cluster.train_stream(stream_of(spark, str(source)), checkpoint,
                                    trigger={"availableNow": True})
    assert training.awaitTermination(600)
    results = cluster.shutdown()
    assert _trained(results) == _expected(parts)
    # back-pressure: while micro-batch 1 trained slowly, the next ones waited in the source;
    # a node never held more than the micro-batch in hand
    assert [r["held"] for r in results] == [1, 1]
    assert [h["batch_id"] for h in training.history] == [0, 1, 2, 4, 5]
    assert [h["rows"] for h in training.history] == [10, 7, 1, 5000, 25]
    # a version after every 2nd trained micro-batch, published whole (no temporary left)
    assert sorted(os.listdir(export)) == ["1", "2"]
    assert os.path.exists(export / "2" / "saved_model.pb")
    assert training.history[3]["version"].endswith("/2") and training.version.endswith("/2")
    assert not training.isActive

    # The driver died after the chief backed micro-batch 5 up but before Spark committed it:
    # Spark replays it to the restarted query, which must not train it again.
    os.remove(os.path.join(checkpoint, "commits", "5"))
    os.remove(os.path.join(checkpoint, "commits", ".5.crc"))
    more = [30, 3]
    write_parts(str(source), more, start=end, first=len(parts))
    cluster = _run(spark, tmp_path, {})
    training = cluster.train_stream(stream_of(spark, str(source)), checkpoint,
                                    trigger={"processingTime": "200 milliseconds"})
    _await(lambda: len(training.history) == 2, 300, "micro-batches 6 and 7")
    training.stop()  # query.stop(): the nodes' loops end, shutdown() returns what they trained
    assert not training.isActive
    results = cluster.shutdown()
    assert training.skipped == [5]
    assert [h["batch_id"] for h in training.history] == [6, 7]
    expected = _expected(parts)
    expected.update(_expected(more, start=end, first_batch=6))
    assert _trained(results) == expected


def test_a_worker_killed_mid_stream_restarts_the_cluster_from_the_backup(spark, tmp_path):
    parts = [30, 40, 50, 60]
    source = tmp_path / "in"
    write_parts(str(source), parts)
    cluster = _run(spark, tmp_path, {"kill_worker_at": 1})  # after fit, before its backup
    training = cluster.train_stream(stream_of(spark, str(source)), str(tmp_path / "ck"),
                                    trigger={"processingTime": "200 milliseconds"})
    _await(lambda: len(training.history) == 4, 300, "4 micro-batches")
    results = cluster.shutdown()  # stops the query, still running, first
    assert not training.isActive
    assert len(cluster.attempts) == 2 and "worker:1" in cluster.attempts[0].cause
    assert _trained(results) == _expected(parts)  # batch 1 once: the killed fit was not kept
    assert [h["batch_id"] for h in training.history] == [0, 1, 2, 3]


def test_failures_stop_the_other_side(spark, tmp_path):
    source = tmp_path / "in"
    write_parts(str(source), [12, 14])
    trigger = {"processingTime": "200 milliseconds"}

    # a node's error stops the query, and awaitTermination raises it
    cluster = _run(spark, tmp_path, {"backup": str(tmp_path / "b3"), "fail_at": 1},
                   max_restarts=0)
    training = cluster.train_stream(stream_of(spark, str(source)), str(tmp_path / "c3"),
                                    trigger=trigger)
    with pytest.raises(NodeError, match="gave up at micro-batch 1"):
        training.awaitTermination(300)
    assert not training.isActive
    with pytest.raises(NodeError, match="gave up at micro-batch 1"):
        cluster.shutdown()

    # a micro-batch Spark cannot read fails the query and stops the nodes, naming the file
    cluster = _run(spark, tmp_path, {"backup": str(tmp_path / "b4")}, max_restarts=0)
    training = cluster.train_stream(stream_of(spark, str(source)), str(tmp_path / "c4"),
                                    trigger=trigger)
    _await(lambda: len(training.history) == 2, 300, "2 micro-batches")
    (source / "part-0002.parquet").write_bytes(b"not parquet")
    with pytest.raises(Exception, match="part-0002"):
        training.awaitTermination(300)
    with pytest.raises(TFSparkError, match="part-0002"):
        cluster.shutdown()
    assert node_process("worker", 0) is None and node_process("worker", 1) is None


def test_train_stream_refuses_what_it_cannot_stream(spark, tmp_path):
    cluster = _run(spark, tmp_path, {})
    try:
        static = spark.range(4)
        with pytest.raises(TFSparkError, match="takes a streaming DataFrame"):
            cluster.train_stream(static, str(tmp_path / "ck"))
        stream = stream_of(spark, str(tmp_path))
        with pytest.raises(TFSparkError, match="needs checkpoint_location"):
            cluster.train_stream(stream, "")
        with pytest.raises(TFSparkError, match="trigger must be"):
            cluster.train_stream(stream, str(tmp_path / "ck"), trigger="5 seconds")
        with pytest.raises(TFSparkError, match="use cluster.train_stream"):
            cluster.train(stream)
    finally:
        cluster._stop("test over")


def test_a_driver_killed_mid_stream_resumes_exactly_once_from_its_checkpoint(tmp_path):
    """The driver process dies (SIGKILL, its executors and TF nodes with it) while the query
    runs; a new driver with the same checkpoint and backup trains the rest, each batch once."""
    parts = [20 + i for i in range(8)]
    source, checkpoint, backup = tmp_path / "in", tmp_path / "ck", tmp_path / "backup"
    write_parts(str(source), parts)
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, SPARK_LOCAL_IP="127.0.0.1",
               TFSPARK_PROGRESS_LINE_SECS="0",
               PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    script = os.path.join(os.path.dirname(__file__), "stream_job.py")
    argv = [sys.executable, script, "local[4]", str(source), str(checkpoint), str(backup), "-"]
    driver = subprocess.Popen(argv + ['{"processingTime": "100 milliseconds"}'], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True, cwd=str(tmp_path))
    try:
        seen = []
        for line in driver.stdout:
            seen.append(line)
            if "tfspark: micro-batch 2" in line:
                break
        assert any("tfspark: micro-batch 2" in line for line in seen), "".join(seen[-50:])
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(60)
    _await(lambda: node_process("worker", 0) is None and node_process("worker", 1) is None,
           60, "the killed driver's TF nodes to go")

    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600,
                          cwd=str(tmp_path))
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stdout[-4000:] + done.stderr[-8000:]
    import json
    result = json.loads(lines[0][len("RESULT "):])
    assert "resumed from the backup" in done.stdout + done.stderr
    expected = {b: (r, i, math.ceil(math.ceil(r / 2) / 4))
                for b, (r, i, _) in _expected(parts).items()}
    assert _trained(result["results"]) == expected


def _save_versions(folder, factors):
    """SavedModels ``folder/k`` scoring ``pred = x * k`` (a tf.Module, its signature)."""
    import tensorflow as tf

    class Times(tf.Module):
        def __init__(self, k):
            super().__init__()
            self.k = tf.Variable(float(k), dtype=tf.float64)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float64, name="x")])
        def serve(self, x):
            return {"pred": x * self.k}

    for k in factors:
        module = Times(k)
        tf.saved_model.save(module, f"{folder}/{k}", signatures={"serving_default": module.serve})


def test_streaming_predict_follows_the_newest_version_within_one_micro_batch(spark, tmp_path):
    """Version 2 (y = 2x) is published while a query scores with version 1 (y = x): the next
    micro-batch scores with it, and every row says which version scored it."""
    from tfspark import predict
    staged, export, source = tmp_path / "staged", tmp_path / "export", tmp_path / "in"
    _save_versions(staged, (1, 2))
    export.mkdir()
    os.rename(staged / "1", export / "1")
    end = write_parts(str(source), [40])
    scored_rows = []
    scored = predict(stream_of(spark, str(source)), str(export), follow_versions=True)
    query = (scored.writeStream.trigger(processingTime="200 milliseconds")
             .option("checkpointLocation", str(tmp_path / "ck"))
             .foreachBatch(lambda df, _: scored_rows.extend(df.collect())).start())
    try:
        _await(lambda: len(scored_rows) == 40, 300, "the first part scored")
        assert {(r.model_version, r.pred == r.x) for r in scored_rows} == {(1, True)}
        os.rename(staged / "2", export / "2")  # published whole, as tfspark.export does
        write_parts(str(source), [30], start=end, first=1)
        _await(lambda: len(scored_rows) == 70, 300, "the second part scored")
        assert {(r.model_version, r.pred == 2 * r.x) for r in scored_rows[40:]} == {(2, True)}
    finally:
        query.stop()
    from tfspark.ml import TFModel
    static = TFModel(modelPath=str(export), followVersions=True).transform(
        spark.createDataFrame([(3.0,)], "x double")).collect()
    assert [(r.model_version, r.pred) for r in static] == [(2, 6.0)]
    with pytest.raises(TFSparkError, match="needs an export directory"):
        predict(spark.range(3), str(export / "1"), follow_versions=True)


def test_parameter_server_strategy_trains_each_micro_batch_on_its_workers(spark, tmp_path):
    """1 ps + chief (coordinator) + 1 worker; the chief fits each micro-batch's dataset_fn."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyspark.sql.types import ArrayType, FloatType, StructField, StructType
    source, export = tmp_path / "in", tmp_path / "export"
    source.mkdir()
    rng = np.random.default_rng(3)
    for i in range(4):
        x = rng.normal(size=(400, 4)).astype("float32")
        y = x @ np.array([1.0, -2.0, 3.0, 0.5], "float32") + 1.0
        path = source / f"part-{i}.parquet"
        pq.write_table(pa.table({"x": list(x), "y": y}), str(path))
        os.utime(path, (1_700_000_000 + i, 1_700_000_000 + i))
    schema = StructType([StructField("x", ArrayType(FloatType())), StructField("y", FloatType())])
    stream = spark.readStream.schema(schema).option("maxFilesPerTrigger", 1).parquet(str(source))
    cluster = TFCluster.run(spark, pss_main_fun, {"backup": str(tmp_path / "backup"),
                                                  "export": str(export)}, 3, num_ps=1,
                            master_node="chief", input_mode=InputMode.SPARK, feed_mode="job")
    training = cluster.train_stream(stream, str(tmp_path / "ck"), trigger={"availableNow": True})
    assert training.awaitTermination(600)
    losses = cluster.shutdown()[1]
    assert [b for b, _ in losses] == [0, 1, 2, 3]
    assert [h["rows"] for h in training.history] == [400] * 4
    assert losses[-1][1] < losses[0][1] / 4  # the rule is being learned across micro-batches
    assert sorted(os.listdir(export)) == ["1", "2"]


def test_a_pss_worker_without_rows_of_a_feed_takes_empty_batches(tmp_path):
    """A micro-batch smaller than the cluster leaves a ParameterServerStrategy worker without
    rows (no spilled file): its dataset_fn yields empty batches, which train nothing, instead of
    failing the coordinator's steps."""
    import pyarrow as pa
    import tensorflow as tf

    from tfspark._feed.arrow_columns import SHAPE_KEY, STRUCTURE_KEY
    from tfspark._feed.datasets import pss_dataset_fn
    from tfspark._feed.feed_state import FeedState, TrainFeed
    schema = pa.schema([pa.field("x", pa.list_(pa.float32(), 4), metadata={SHAPE_KEY: b"[4]"}),
                        pa.field("y", pa.float32())], metadata={STRUCTURE_KEY: b"columns"})
    feed = TrainFeed(9, ended=True, rows_per_node=[1, 0], schema=schema,
                     stream={"batch_id": 0})
    dataset_fn = pss_dataset_fn(FeedState(1), feed, str(tmp_path), 16, "y", shuffle=True,
                                seed=1, shuffle_buffer=8)
    batches = list(dataset_fn(tf.distribute.InputContext()).take(3))
    assert [(tuple(x.shape), tuple(y.shape)) for x, y in batches] == [((0, 4), (0,))] * 3
