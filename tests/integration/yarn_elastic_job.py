"""A driver on YARN (client mode, 4 executors x 1 core) that loses executors for good while it
trains: the test's :class:`tfspark.testing.spark.NodeKiller` shrinks the NodeManager below what
runs on it and kills the node's executor container when the job asks
(``WORKDIR/kill-<job>-<index>``), so YARN grants no replacement. Prints one ``RESULT {json}``.

    spark-submit --master yarn ... yarn_elastic_job.py WORKDIR

1. ParameterServerStrategy (ps, chief, 2 workers): worker:1's executor is lost at epoch 2;
   training goes on with worker:0, no restart.
2. MultiWorkerMirroredStrategy, 3 workers on the 3 executors left, ``min_workers=2``:
   worker:2's executor is lost at epoch 2; the cluster restarts on 2 workers from the backup.
"""
from __future__ import annotations

import json
import sys
import time

from pyspark import cloudpickle

cloudpickle.register_pickle_by_value(sys.modules[__name__])

EPOCHS, STEPS = 5, 20


def pss(args, ctx):
    import tensorflow as tf
    from tfspark.testing.spark import await_kill, request_kill
    strategy = ctx.parameter_server_strategy()

    def dataset_fn(input_context):
        x = tf.random.stateless_normal((256, 4), seed=[1, 2])
        y = tf.reduce_sum(x, axis=1, keepdims=True)
        return tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(16)

    with strategy.scope():
        model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(1)])
        model.compile(tf.keras.optimizers.SGD(0.05), "mse")

    class Kill(tf.keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                request_kill(args["work"], "worker", 1)
            elif epoch == 2:
                await_kill(args["work"])

    history = model.fit(tf.keras.utils.experimental.DatasetCreator(dataset_fn), epochs=EPOCHS,
                        steps_per_epoch=STEPS, verbose=0, callbacks=[Kill()])
    return len(history.history["loss"])


def mwms(args, ctx):
    import tensorflow as tf
    from tfspark.testing.spark import request_kill
    strategy = ctx.multi_worker_mirrored_strategy()
    rows = tf.data.Dataset.range(240).shard(ctx.num_workers, ctx.worker_num)
    data = rows.map(lambda i: (tf.fill([4], tf.cast(i % 7, tf.float32)), tf.cast(i % 3,
                                                                                  tf.float32)))
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    dataset = data.batch(8).with_options(options)
    with strategy.scope():
        model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(1)])
        model.compile(tf.keras.optimizers.SGD(0.01), "mse")
    epochs = []

    class Kill(tf.keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if ctx.attempt == 0 and epoch == 1 and ctx.worker_num == 2:
                request_kill(args["work"], "worker", 2)
                time.sleep(120)  # its executor, and this process with it, are killed

        def on_epoch_end(self, epoch, logs=None):
            epochs.append(epoch + 1)

    backup = ctx.backup_and_restore(f"file://{args['work']}/mwms-backup")
    model.fit(dataset, epochs=EPOCHS, verbose=0, callbacks=[backup, Kill()])
    return {"workers": ctx.num_workers, "epochs": epochs}


def run(sc, work: str, main_fun, num_executors: int, **kwargs) -> dict:
    from tfspark import TFCluster
    started = time.time()
    cluster = TFCluster.run(sc, main_fun, {"work": work}, num_executors, **kwargs)
    results = cluster.shutdown(timeout=600)
    return {"results": results, "secs": time.time() - started,
            "attempts": [[a.workers, list(a.lost)] for a in cluster.attempts]}


def main(work: str) -> None:
    from pyspark.sql import SparkSession
    spark = SparkSession.builder.getOrCreate()
    sc = spark.sparkContext
    out = {"pss": run(sc, work, pss, 4, num_ps=1, master_node="chief")}
    out["mwms"] = run(sc, work, mwms, 3, min_workers=2, slot_wait=10)
    print("RESULT " + json.dumps(out), flush=True)
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1])
