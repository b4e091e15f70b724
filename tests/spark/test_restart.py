"""A TF cluster survives its nodes' deaths: tfspark restarts it and training resumes.

Nodes die the way they do on real clusters -- their process SIGKILLed (the OOM killer, a
preempted container), their executor's JVM killed -- at a step chosen at random; each test
asserts what the user gets: the job's results, the steps trained after the restart, every row of
every epoch, and the cause of every attempt.
"""
from __future__ import annotations

import logging
import os
import random
import sys
import uuid

import pytest
from pyspark import cloudpickle

from conftest import orphaned_task_dirs
from test_rows_trained import _counting_model, _per_epoch_counts
from tfspark import InputMode, NodeError, TFCluster, tfrecord

cloudpickle.register_pickle_by_value(sys.modules[__name__])

EPOCHS, STEPS = 4, 12


def _die_at(ctx, attempt_steps, how):
    """Kill this node (SIGKILL its process, or its executor's JVM) on the first attempt, at the
    global step ``attempt_steps`` of worker ``how["worker"]``."""
    import signal
    if ctx.attempt != 0 or ctx.worker_num != how["worker"] or attempt_steps != how["step"]:
        return
    print(f"test: killing {how['what']} at step {attempt_steps}", flush=True)
    if how["what"] == "process":
        os.kill(os.getpid(), signal.SIGKILL)
    pid = os.getpid()
    while pid > 1:  # node process -> Python worker -> pyspark daemon -> executor JVM
        pid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if b"CoarseGrainedExecutorBackend" in f.read():
                os.kill(pid, signal.SIGKILL)
                return
    raise RuntimeError("no executor JVM above this node")


def _fit_tfrecords(args, ctx):
    """MWMS model.fit on TFRecords (TF-read input), backed up to ``args['backup']``."""
    import tensorflow as tf
    from tfspark.data import tfrecord_dataset
    tf.keras.utils.set_random_seed(1)
    strategy = ctx.multi_worker_mirrored_strategy()
    features = {"x": tf.io.FixedLenFeature([4], tf.float32),
                "y": tf.io.FixedLenFeature([], tf.float32)}
    data = tfrecord_dataset(args["data"], features, batch_size=16, ctx=ctx, seed=3)
    data = data.map(lambda r: (r["x"], r["y"])).repeat()
    with strategy.scope():
        model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(1)])
        model.compile(optimizer=tf.keras.optimizers.SGD(0.05), loss="mse")
    steps = []

    class Steps(tf.keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            steps.append(int(model.optimizer.iterations.numpy()))
            if args.get("kill"):
                _die_at(ctx, steps[-1], args["kill"])

    history = model.fit(data, epochs=EPOCHS, steps_per_epoch=STEPS, verbose=0,
                        callbacks=[ctx.backup_and_restore(args["backup"]), Steps()])
    return {"attempt": ctx.attempt, "steps": steps, "loss": history.history["loss"][-1],
            "weights": [w.tolist() for w in model.get_weights()]}


@pytest.fixture(scope="module")
def tfrecords(spark, tmp_path_factory):
    rng = random.Random(5)
    rows = []
    for _ in range(768):
        x = [rng.uniform(-1, 1) for _ in range(4)]
        rows.append((x, sum(x) * 0.5 + 0.1))
    path = f"file://{tmp_path_factory.mktemp('restart')}/data"  # whatever the default FS
    tfrecord.write(spark.createDataFrame(rows, "x array<float>, y float").repartition(4), path)
    return path


def _restart_log(caplog):
    return [r.getMessage() for r in caplog.records
            if "restarting the TF cluster" in r.getMessage()]


def test_worker_killed_mid_training_restarts_and_resumes_from_the_hdfs_backup(
        sc, tfrecords, hadoop_env, hdfs_cluster, caplog):
    caplog.set_level(logging.INFO, logger="tfspark")
    base = f"{hdfs_cluster.default_fs}/tmp/restart-{uuid.uuid4().hex[:8]}"
    clean = TFCluster.run(sc, _fit_tfrecords, {"data": tfrecords, "backup": f"{base}/clean"},
                          2).shutdown(timeout=300)
    kill_step = random.randint(STEPS + 1, 3 * STEPS - 1)  # in epoch 2 or 3: some are backed up
    cluster = TFCluster.run(sc, _fit_tfrecords, {
        "data": tfrecords, "backup": f"{base}/killed",
        "kill": {"worker": 1, "step": kill_step, "what": "process"}}, 2)
    results = cluster.shutdown(timeout=300)

    assert [a.number for a in cluster.attempts] == [0, 1]
    assert "worker:1" in cluster.attempts[0].cause
    assert "killed by signal 9" in cluster.attempts[0].cause
    assert cluster.attempts[1].cause is None
    assert _restart_log(caplog) and "(1 of 2)" in _restart_log(caplog)[0]
    assert "worker:1" in _restart_log(caplog)[0]
    for result in results:
        assert result["attempt"] == 1
        # resumed at the epoch after the last backup, not from step 1
        resumed_from = (kill_step - 1) // STEPS * STEPS
        assert result["steps"] == list(range(resumed_from + 1, EPOCHS * STEPS + 1))
    assert results[0]["weights"] == results[1]["weights"]
    assert abs(results[0]["loss"] - clean[0]["loss"]) <= 0.1 * clean[0]["loss"]


def test_executor_lost_restarts_the_cluster_on_the_slots_left(sc, tfrecords, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="tfspark")
    cluster = TFCluster.run(sc, _fit_tfrecords, {
        "data": tfrecords, "backup": f"file://{tmp_path}/backup",
        "kill": {"worker": 0, "step": STEPS + 3, "what": "executor"}}, 2)
    results = cluster.shutdown(timeout=300)
    assert len(cluster.attempts) == 2
    cause = cluster.attempts[0].cause  # whichever Spark or the node's task reported first
    assert "lost contact" in cause or "ExecutorLostFailure" in cause, cause
    assert [r["attempt"] for r in results] == [1, 1]
    first = results[0]["steps"][0]  # the nodes trained on until their process saw the loss
    assert first > STEPS and (first - 1) % STEPS == 0  # resumed at an epoch after the backup
    assert results[0]["steps"][-1] == EPOCHS * STEPS
    assert results[0]["weights"] == results[1]["weights"]
    assert orphaned_task_dirs() == []  # the lost executor's node left no files behind


def _fit_fed_rows(args, ctx):
    """Spark-fed MWMS model.fit counting the rows of every epoch (see test_rows_trained)."""
    import tensorflow as tf
    strategy = ctx.multi_worker_mirrored_strategy()
    feed = ctx.get_data_feed()
    dataset = feed.dataset(8, label="y").map(lambda x, y: (x, y))
    with strategy.scope():
        model = _counting_model(tf)
    record = _per_epoch_counts(tf, model)

    class Kill(tf.keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            _die_at(ctx, int(model.optimizer.iterations.numpy()), args)

    model.fit(dataset, epochs=feed.num_epochs, verbose=0,
              callbacks=[ctx.backup_and_restore(args["backup"]), record, Kill()])
    return {"attempt": ctx.attempt, "epochs": record.epochs, "steps": feed.steps_per_epoch}


def test_spark_fed_training_killed_mid_epoch_reruns_that_epoch_with_every_row(spark, tmp_path):
    rows = 400  # 2 workers x 25 steps of 8 rows per epoch
    df = spark.createDataFrame([(float(i), 1.0) for i in range(rows)], "id double, y double")
    kill = {"worker": 1, "step": 25 + random.randint(2, 20), "what": "process"}  # epoch 2
    cluster = TFCluster.run(spark.sparkContext, _fit_fed_rows,
                            dict(kill, backup=f"file://{tmp_path}/backup"), 2,
                            input_mode=InputMode.SPARK)
    cluster.train(df.repartition(5), num_epochs=3)
    results = cluster.shutdown(timeout=300)
    assert len(cluster.attempts) == 2
    for result in results:
        assert result["attempt"] == 1
        # epoch 1 was backed up; epoch 2, cut short, is rerun whole; then epoch 3
        assert result["epochs"] == [(rows, sum(range(rows)))] * 2
    assert orphaned_task_dirs() == []  # nor did the killed node leave its spill behind


def _raise_value_error(args, ctx):
    raise ValueError("bad hyper-parameter: learning_rate=-1")


def test_main_fun_raising_is_not_restarted(sc):
    cluster = TFCluster.run(sc, _raise_value_error, None, 2)
    with pytest.raises(NodeError, match="ValueError: bad hyper-parameter") as error:
        cluster.shutdown(timeout=120)
    assert len(cluster.attempts) == 1 and not error.value.restartable


def _killed_every_attempt(args, ctx):
    import signal
    import time
    if ctx.worker_num == 1:
        time.sleep(1)
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(300)


def test_max_restarts_0_fails_at_the_first_kill(sc):
    cluster = TFCluster.run(sc, _killed_every_attempt, None, 2, max_restarts=0)
    with pytest.raises(NodeError, match=r"worker:1 .* killed by signal 9") as error:
        cluster.shutdown(timeout=120)
    assert len(cluster.attempts) == 1 and error.value.restartable
    assert "every attempt failed" not in str(error.value)


def test_restarts_run_out_with_an_error_naming_every_attempt(sc, caplog):
    caplog.set_level(logging.INFO, logger="tfspark")
    cluster = TFCluster.run(sc, _killed_every_attempt, None, 2, max_restarts=1)
    with pytest.raises(NodeError) as error:
        cluster.shutdown(timeout=240)
    text = str(error.value)
    assert "The TF cluster ran 2 times and every attempt failed" in text
    assert text.count("worker:1 on") >= 2 and "attempt 2: worker:1" in text
    assert len(_restart_log(caplog)) == 1 and "(1 of 1)" in _restart_log(caplog)[0]
    assert [a.restartable for a in cluster.attempts] == [True, True]


def test_max_restarts_must_be_a_count(sc):
    from tfspark.errors import PreflightError
    with pytest.raises(PreflightError, match="max_restarts must be an int >= 0"):
        TFCluster.run(sc, _raise_value_error, None, 2, max_restarts=-1)
