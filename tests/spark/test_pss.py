"""ParameterServerStrategy on the real standalone cluster: 1 ps + chief + 2 workers (4 slots)."""
from __future__ import annotations

import sys
import time

import pytest
from pyspark import cloudpickle

from tfspark import NodeError, TFCluster

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _coordinate(args, ctx):
    import tensorflow as tf

    if ctx.job_name == "evaluator":
        return _evaluate_checkpoints(args, ctx)
    strategy = ctx.parameter_server_strategy()
    true_weights = tf.constant([[1.0], [-2.0], [3.0], [0.5]])

    def dataset_fn(input_context):
        x = tf.random.stateless_normal((512, 4), seed=[7, input_context.input_pipeline_id])
        y = tf.matmul(x, true_weights) + 1.0
        return tf.data.Dataset.from_tensor_slices((x, y)).shuffle(512).batch(32).repeat()

    with strategy.scope():
        model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(1)])
        model.compile(optimizer=tf.keras.optimizers.SGD(0.05), loss="mse",
                      steps_per_execution=4)
    callbacks = []
    if args.get("checkpoints"):
        callbacks.append(tf.keras.callbacks.ModelCheckpoint(
            args["checkpoints"] + "/ckpt-{epoch}", save_weights_only=True))
    history = model.fit(tf.keras.utils.experimental.DatasetCreator(dataset_fn), epochs=4,
                        steps_per_epoch=24, callbacks=callbacks, verbose=2)
    if args.get("fail"):
        raise RuntimeError("chief gives up")
    return {"loss": history.history["loss"],
            "devices": sorted({v.device for v in model.variables}),
            "workers": len(ctx.cluster_spec["worker"])}


def _evaluate_checkpoints(args, ctx):
    import tensorflow as tf

    model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(1)])
    model.compile(loss="mse", metrics=["mae"])
    x = tf.random.stateless_normal((256, 4), seed=[8, 0])
    y = tf.matmul(x, tf.constant([[1.0], [-2.0], [3.0], [0.5]])) + 1.0
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(64)

    class Report(tf.keras.callbacks.Callback):
        def on_test_end(self, logs=None):
            print(f"evaluated a checkpoint: mae={logs['mae']:.4f}", flush=True)

    tf.keras.utils.SidecarEvaluator(model, data, args["checkpoints"], max_evaluations=1,
                                    callbacks=[Report()]).start()
    return "evaluated"


def test_sidecar_evaluator_evaluates_the_chiefs_checkpoints(sc, tmp_path, capfd):
    cluster = TFCluster.run(sc, _coordinate, {"checkpoints": str(tmp_path / "ckpt")}, 4,
                            num_ps=1, master_node="chief", eval_node=True)
    results = cluster.shutdown(timeout=300, grace_secs=120)
    assert results[3] == "evaluated"
    assert "[evaluator:0] evaluated a checkpoint: mae=" in capfd.readouterr().out


def test_parameter_servers_hold_the_variables_and_training_converges(sc):
    started = time.monotonic()
    cluster = TFCluster.run(sc, _coordinate, {}, 4, num_ps=1, master_node="chief")
    results = cluster.shutdown(timeout=300)

    ps, chief, worker0, worker1 = results
    assert ps is None and worker0 is None and worker1 is None  # servers, stopped at the end
    assert chief["workers"] == 2
    assert all("/job:ps/" in device for device in chief["devices"]), chief["devices"]
    assert chief["loss"][-1] < chief["loss"][0] / 10
    assert not sc.statusTracker().getActiveJobsIds()
    print(f"PSS run took {time.monotonic() - started:.1f}s")


def test_chief_failure_stops_every_node(sc):
    started = time.monotonic()
    cluster = TFCluster.run(sc, _coordinate, {"fail": True}, 4, num_ps=1, master_node="chief")
    with pytest.raises(NodeError) as raised:
        cluster.shutdown(timeout=300)
    assert (raised.value.role, raised.value.index) == ("chief", 0)
    assert "RuntimeError: chief gives up" in str(raised.value)
    assert time.monotonic() - started < 120
    deadline = time.monotonic() + 60
    while sc.statusTracker().getActiveJobsIds() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not sc.statusTracker().getActiveJobsIds()


def _coordinate_on_staged_tfrecords(args, ctx):
    import tensorflow as tf

    strategy = ctx.parameter_server_strategy()
    features = {"x": tf.io.FixedLenFeature([4], tf.float32),
                "y": tf.io.FixedLenFeature([1], tf.float32)}
    pattern = ctx.staged_files("train")  # each worker reads its own local shard

    def dataset_fn(input_context):
        files = tf.data.Dataset.list_files(pattern, shuffle=False)
        records = tf.data.TFRecordDataset(files).repeat().shuffle(256).batch(32)
        return records.map(lambda r: (lambda f: (f["x"], f["y"]))(tf.io.parse_example(r, features)))

    with strategy.scope():
        model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(1)])
        model.compile(optimizer=tf.keras.optimizers.SGD(0.05), loss="mse")
    history = model.fit(tf.keras.utils.experimental.DatasetCreator(dataset_fn), epochs=4,
                        steps_per_epoch=24, verbose=2)
    return history.history["loss"]


def write_regression_tfrecords(spark, path, rows=2048, files=4):
    import numpy as np
    from tfspark import tfrecord
    rng = np.random.default_rng(5)
    x = rng.normal(size=(rows, 4)).astype("float32")
    y = x @ np.array([1.0, -2.0, 3.0, 0.5], "float32") + 1.0
    df = spark.createDataFrame([(x[i].tolist(), float(y[i])) for i in range(rows)],
                               "x array<float>, y float").repartition(files)
    tfrecord.write(df, path)


def test_pss_workers_train_on_their_staged_tfrecord_shards(spark, tmp_path):
    data = str(tmp_path / "train")
    write_regression_tfrecords(spark, data)
    cluster = TFCluster.run(spark.sparkContext, _coordinate_on_staged_tfrecords, {}, 4,
                            num_ps=1, master_node="chief", stage_files={"train": data})
    loss = cluster.shutdown(timeout=300)[1]
    assert loss[-1] < loss[0] / 10


def test_pss_workers_stage_their_shards_from_hdfs(spark, hadoop_env, hdfs_cluster):
    import uuid
    data = f"{hdfs_cluster.default_fs}/tmp/pss-{uuid.uuid4().hex[:8]}/train"
    write_regression_tfrecords(spark, data)
    cluster = TFCluster.run(spark.sparkContext, _coordinate_on_staged_tfrecords, {}, 4,
                            num_ps=1, master_node="chief", stage_files={"train": data})
    loss = cluster.shutdown(timeout=300)[1]
    assert loss[-1] < loss[0] / 10


def _coordinate_spark_fed(args, ctx):
    import tensorflow as tf

    strategy = ctx.parameter_server_strategy()
    feed = ctx.get_data_feed()
    dataset_fn = feed.dataset_fn(batch_size=32, label="y")
    with strategy.scope():
        model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(1)])
        model.compile(optimizer=tf.keras.optimizers.SGD(0.05), loss="mse")
    history = model.fit(tf.keras.utils.experimental.DatasetCreator(dataset_fn),
                        epochs=feed.num_epochs, steps_per_epoch=feed.steps_per_epoch, verbose=2)
    return {"loss": history.history["loss"], "steps": feed.steps_per_epoch}


@pytest.mark.parametrize("nodes,feed_mode", [(3, "job"), (4, "stage")])
def test_pss_trains_on_a_spark_fed_dataframe(spark, nodes, feed_mode):
    import numpy as np
    from tfspark import InputMode
    rng = np.random.default_rng(6)
    x = rng.normal(size=(1024, 4)).astype("float32")
    y = x @ np.array([1.0, -2.0, 3.0, 0.5], "float32") + 1.0
    df = spark.createDataFrame([(x[i].tolist(), float(y[i])) for i in range(len(x))],
                               "x array<float>, y float").repartition(3)
    # job: 1 ps + chief + 1 worker, the feeding job takes the 4th slot; stage: 1 ps + chief +
    # 2 workers take all 4, the ps's and chief's partitions are dealt over the workers
    cluster = TFCluster.run(spark.sparkContext, _coordinate_spark_fed, {}, nodes, num_ps=1,
                            master_node="chief", input_mode=InputMode.SPARK,
                            feed_mode=feed_mode)
    cluster.train(df, num_epochs=4)
    chief = cluster.shutdown(timeout=300)[1]
    assert chief["steps"] == 32
    assert chief["loss"][-1] < chief["loss"][0] / 10


def _kill_mid_training(args, ctx):
    import subprocess
    import tensorflow as tf

    strategy = ctx.parameter_server_strategy()

    def dataset_fn(input_context):
        x = tf.random.stateless_normal((256, 4), seed=[9, 0])
        return tf.data.Dataset.from_tensor_slices((x, tf.reduce_sum(x, 1))).batch(32).repeat()

    class Kill(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1 and ctx.attempt == 0:  # the node processes are named after their role
                subprocess.run(["pkill", "-9", "-f", f"tfspark-{args['kill']}-"], check=True)

    with strategy.scope():
        model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
    history = model.fit(tf.keras.utils.experimental.DatasetCreator(dataset_fn), epochs=6,
                        steps_per_epoch=10, verbose=2,
                        callbacks=[ctx.backup_and_restore(args["backup"]), Kill()])
    return {"attempt": ctx.attempt, "epochs": len(history.history["loss"]),
            "steps": int(model.optimizer.iterations.numpy()), "loss": history.history["loss"]}


def test_worker_killed_is_restarted_in_place_and_training_finishes(sc, tmp_path, capfd):
    cluster = TFCluster.run(sc, _kill_mid_training,
                            {"kill": "worker-1", "backup": str(tmp_path / "backup")}, 4,
                            num_ps=1, master_node="chief")
    chief = cluster.shutdown(timeout=300)[1]
    assert len(cluster.attempts) == 1  # no cluster restart
    assert chief["attempt"] == 0 and chief["epochs"] == 6 and chief["steps"] == 60
    out = capfd.readouterr()
    assert "restarting worker:1's TF server in place (1 of 2)" in out.out + out.err


def test_ps_killed_restarts_the_cluster_from_the_backup(sc, tmp_path):
    cluster = TFCluster.run(sc, _kill_mid_training,
                            {"kill": "ps-0", "backup": str(tmp_path / "backup")}, 4,
                            num_ps=1, master_node="chief")
    chief = cluster.shutdown(timeout=300)[1]
    assert len(cluster.attempts) == 2 and "ps:0" in cluster.attempts[0].cause
    assert chief["attempt"] == 1 and chief["steps"] == 60
    assert chief["epochs"] == 4  # epochs 1-2 were backed up: only 3-6 ran again


def test_worker_killed_without_restarts_ends_the_job_naming_it(sc, tmp_path):
    started = time.monotonic()
    cluster = TFCluster.run(sc, _kill_mid_training,
                            {"kill": "worker-1", "backup": str(tmp_path / "backup")}, 4,
                            num_ps=1, master_node="chief", max_restarts=0)
    with pytest.raises(NodeError, match=r"worker:1 .* killed by signal 9"):
        cluster.shutdown(timeout=300)
    assert time.monotonic() - started < 150
