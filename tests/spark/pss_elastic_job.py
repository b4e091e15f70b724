"""A driver whose ParameterServerStrategy cluster (ps, chief, 2 workers) loses worker:1's Spark
worker daemon with its executor mid-training, on a standalone cluster of 4 workers x 1 core that
the test owns; prints one ``RESULT {json}``.

    python pss_elastic_job.py spark://127.0.0.1:7077 WORKDIR

The chief asks the test's :class:`tfspark.testing.spark.NodeKiller` to kill worker:1's daemon
(``WORKDIR/kill-worker-1``, saying ``replace`` in it or not); it answers ``killed`` and then, if
asked, starts a replacement Spark worker on the same host, where Spark runs worker:1's task
again. The chief counts, in ``train_step`` (on the parameter
servers), the rows each worker trained on, before the kill, while worker:1 is gone, and after
it rejoined; it compares the trained weights' loss on fixed data with an unkilled run's.
"""
from __future__ import annotations

import json
import socket
import sys
import time

from pyspark import cloudpickle

cloudpickle.register_pickle_by_value(sys.modules[__name__])

EPOCHS, STEPS, BATCH = 8, 20, 32
KILL_EPOCH, REJOIN_EPOCH = 2, 5  # (0-based) the kill during epoch 3, the rejoin awaited at 6


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:g}s for {what}")
        time.sleep(0.2)


def listening(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
        return True
    except OSError:
        return False


def train(args, ctx):
    import numpy as np
    import tensorflow as tf
    from tfspark.testing.spark import await_kill, request_kill

    strategy = ctx.parameter_server_strategy()
    true_weights = np.array([[1.0], [-2.0], [3.0], [0.5]], np.float32)

    def dataset_fn(input_context):
        def noisy(seed):
            x = tf.random.stateless_normal((4,), seed=tf.stack([seed, 1]))
            noise = tf.random.stateless_normal((1,), seed=tf.stack([seed, 2]), stddev=0.3)
            return x, tf.linalg.matvec(true_weights, x, transpose_a=True) + 1.0 + noise
        return tf.data.Dataset.counter().map(noisy).batch(BATCH)

    class Counting(tf.keras.Model):
        """A linear model that counts, per worker, the rows its train_step ran on."""

        def __init__(self):
            super().__init__()
            self.dense = tf.keras.layers.Dense(1)
            self.rows_by_worker = tf.Variable(tf.zeros([2], tf.int64), trainable=False)

        def call(self, x):
            return self.dense(x)

        def train_step(self, data):
            logs = super().train_step(data)
            worker = tf.distribute.coordinator.experimental_get_current_worker_index()
            rows = tf.cast(tf.shape(data[0])[0], tf.int64)
            self.rows_by_worker.assign_add(tf.one_hot(worker, 2, dtype=tf.int64) * rows)
            return logs

    with strategy.scope():
        model = Counting()
        model.compile(optimizer=tf.keras.optimizers.SGD(0.05), loss="mse")
    work, kill = args["work"], args["kill"]
    marks = {}

    def rows():
        return [int(v) for v in model.rows_by_worker.numpy()]

    class Kill(tf.keras.callbacks.Callback):
        """Epoch-level only (ParameterServerStrategy has no batch-level callbacks)."""

        def on_epoch_begin(self, epoch, logs=None):
            if not kill:
                return
            if epoch == KILL_EPOCH:  # killed while this epoch's steps run
                marks["kill"] = rows()
                request_kill(work, "worker", 1, replace=kill == "replace")
            elif epoch == KILL_EPOCH + 1:
                await_kill(work)
            elif epoch == REJOIN_EPOCH and kill == "replace":
                marks["gone"] = rows()  # worker:0 alone since the kill
                wait_for(lambda: listening(ctx.cluster_spec["worker"][1]), 240,
                         "worker:1 to listen again")
                marks["rejoined"], marks["rejoined_at"] = rows(), time.time()

        def on_epoch_end(self, epoch, logs=None):
            """After EPOCHS, the unkilled run stops; the killed one once worker:1 trained again
            (the coordinator takes it back within seconds), or 120 s after it listened."""
            if epoch + 1 >= EPOCHS and (kill != "replace" or rows()[1] > marks["rejoined"][1]
                                         or time.time() - marks["rejoined_at"] > 120):
                self.model.stop_training = True

    history = model.fit(tf.keras.utils.experimental.DatasetCreator(dataset_fn), epochs=EPOCHS * 50,
                        steps_per_epoch=STEPS, verbose=0, callbacks=[Kill()])
    rng = np.random.default_rng(5)  # held-out rows with the training data's noise
    x = rng.normal(size=(4096, 4)).astype(np.float32)
    y = x @ true_weights + 1.0 + rng.normal(scale=0.3, size=(4096, 1))
    weights, bias = model.dense.get_weights()
    marks["end"] = rows()
    return {"epochs": len(history.history["loss"]), "marks": marks,
            "mse": float(np.mean((x @ weights + bias - y) ** 2))}


def run(sc, work: str, kill: str) -> dict:
    """``kill``: "" (not), "replace" (a replacement Spark worker follows) or "gone"."""
    from tfspark import TFCluster
    started = time.time()
    cluster = TFCluster.run(sc, train, {"work": work, "kill": kill}, 4, num_ps=1,
                            master_node="chief")
    results = cluster.shutdown(timeout=600)
    return {"chief": results[1], "secs": time.time() - started,
            "attempts": [[a.number, a.workers, list(a.lost)] for a in cluster.attempts],
            "history_workers": [h.get("workers") for h in cluster.history]}


def main(master: str, work: str) -> None:
    from pyspark.sql import SparkSession
    spark = (SparkSession.builder.master(master).appName("tfspark-pss-elastic")
             .config("spark.driver.host", "127.0.0.1").config("spark.ui.enabled", "false")
             .config("spark.executor.memory", "1g").getOrCreate())
    out = {"unkilled": run(spark.sparkContext, work, kill=""),
           "killed": run(spark.sparkContext, work, kill="replace"),
           "gone": run(spark.sparkContext, work, kill="gone")}
    print("RESULT " + json.dumps(out), flush=True)
    spark.stop()


if __name__ == "__main__":
    main(*sys.argv[1:3])
