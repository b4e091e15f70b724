"""A driver that loses Spark worker daemons (with their executors) for good while it trains, on
a standalone cluster of 2 workers x 1 core that the test owns; prints one ``RESULT {json}``.

    python elastic_job.py spark://127.0.0.1:7077 WORKDIR

``WORKDIR/need-worker-N`` asks the test for a replacement worker; it answers ``added-N``.
"""
from __future__ import annotations

import json
import os
import sys
import time

from pyspark import cloudpickle

import test_rows_trained
from test_rows_trained import _counting_model, _per_epoch_counts

cloudpickle.register_pickle_by_value(sys.modules[__name__])
cloudpickle.register_pickle_by_value(test_rows_trained)

ROWS, EPOCHS, BATCH = 1200, 5, 10  # 2 workers: 60 steps an epoch


def ask_for_a_worker(work: str, number: int, timeout: float = 180) -> None:
    open(os.path.join(work, f"need-worker-{number}"), "w").close()
    deadline = time.monotonic() + timeout
    while not os.path.exists(os.path.join(work, f"added-{number}")):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no replacement worker {number}")
        time.sleep(0.2)


def kill_my_spark_worker(work: str) -> None:
    """SIGKILL the Spark worker daemon above this node, with its executors: the slot is gone."""
    from tfspark.testing.spark import kill_spark_worker_above
    with open(os.path.join(work, "killed-at"), "w") as out:
        out.write(str(time.time()))
    kill_spark_worker_above()
    raise RuntimeError("no Spark worker daemon above this node")


def train(args, ctx):
    """Spark-fed (``args["tfrecords"]`` None) or TF-read counting model.fit, backed up; kills
    its Spark worker at ``args["kill_step"]`` of attempt 0 (worker_num 1); with
    ``args["grow"]``, a shrunken attempt asks for a replacement worker at epoch 4 and then ends
    its own process, so that the next restart can grow back."""
    import signal
    import tensorflow as tf
    strategy = ctx.multi_worker_mirrored_strategy()
    if args["tfrecords"]:
        from tfspark.data import tfrecord_dataset
        features = {"id": tf.io.FixedLenFeature([], tf.float32),
                    "y": tf.io.FixedLenFeature([], tf.float32)}
        dataset = tfrecord_dataset(args["tfrecords"], features, batch_size=BATCH, ctx=ctx)
        dataset = dataset.map(lambda r: (r["id"], r["y"]))
        epochs = EPOCHS
    else:
        feed = ctx.get_data_feed()
        dataset, epochs = feed.dataset(BATCH, label="y"), feed.num_epochs
    with strategy.scope():
        model = _counting_model(tf)
    record = _per_epoch_counts(tf, model)
    log = os.path.join(args["work"], args["log"])

    class Hooks(tf.keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.first_step = int(model.optimizer.iterations.numpy())
            if (args["grow"] and ctx.num_workers < ctx.full_num_workers and epoch == 3
                    and ctx.worker_num == 0):
                ask_for_a_worker(args["work"], 2)
                os.kill(os.getpid(), signal.SIGKILL)  # a restart: now the slot is back

        def on_train_batch_end(self, batch, logs=None):
            step = int(model.optimizer.iterations.numpy())
            if ctx.attempt == 0 and ctx.worker_num == 1 and step == args["kill_step"]:
                kill_my_spark_worker(args["work"])
            if ctx.attempt == 1 and not os.path.exists(os.path.join(args["work"], "resumed")):
                with open(os.path.join(args["work"], "resumed"), "w") as out:
                    out.write(str(time.time()))

        def on_epoch_end(self, epoch, logs=None):
            rows, ids = record.epochs[-1]
            with open(log, "a") as out:
                out.write(json.dumps({"attempt": ctx.attempt, "node": ctx.worker_num,
                                      "workers": ctx.num_workers, "epoch": epoch + 1,
                                      "rows": rows, "ids": ids, "steps": int(
                                          model.optimizer.iterations.numpy()) - self.first_step})
                          + "\n")

    backup = ctx.backup_and_restore(f"file://{args['work']}/{args['log']}-backup")
    model.fit(dataset, epochs=epochs, verbose=0, callbacks=[backup, record, Hooks()])
    return ctx.num_workers


def run(sc, spark, work: str, name: str, min_workers: int, tfrecords=None, grow=False) -> dict:
    from tfspark import InputMode, TFCluster, TFSparkError
    args = {"work": work, "log": name, "tfrecords": tfrecords, "grow": grow,
            "kill_step": 60 + 25}  # mid epoch 2
    started = time.time()
    try:
        cluster = TFCluster.run(sc, train, args, 2, min_workers=min_workers, slot_wait=10,
                                max_restarts=3,
                                input_mode=InputMode.TENSORFLOW if tfrecords else InputMode.SPARK)
        if not tfrecords:
            df = spark.range(ROWS, numPartitions=4).selectExpr("CAST(id AS float) AS id",
                                                               "CAST(1 AS float) AS y")
            cluster.train(df, num_epochs=EPOCHS)
        results = cluster.shutdown(timeout=600)
        error = None
    except TFSparkError as e:
        results, error, cluster = None, str(e), locals().get("cluster")
    lines = open(os.path.join(work, name)).read().splitlines() if os.path.exists(
        os.path.join(work, name)) else []
    times = {}
    for marker in ("killed-at", "resumed"):
        path = os.path.join(work, marker)
        if os.path.exists(path):
            times[marker] = float(open(path).read())
            os.remove(path)
    return {"results": results, "error": error, "secs": time.time() - started,
            "epochs": [json.loads(line) for line in lines], "times": times,
            "attempts": [[a.number, a.workers, a.cause] for a in cluster.attempts]
            if cluster is not None else None,
            "history_workers": [h.get("workers") for h in cluster.history]
            if cluster is not None else None}


def main(master: str, work: str) -> None:
    from pyspark.sql import SparkSession
    from tfspark import tfrecord
    spark = (SparkSession.builder.master(master).appName("tfspark-elastic")
             .config("spark.driver.host", "127.0.0.1").config("spark.ui.enabled", "false")
             .config("spark.executor.memory", "1g").getOrCreate())
    sc = spark.sparkContext
    out = {}
    out["too_few"] = run(sc, spark, work, "too-few", min_workers=2,
                         tfrecords=None)
    ask_for_a_worker(work, 1)
    out["fed"] = run(sc, spark, work, "fed", min_workers=1, grow=True)
    records = f"file://{work}/records"
    tfrecord.write(spark.range(ROWS, numPartitions=4).selectExpr(
        "CAST(id AS float) AS id", "CAST(1 AS float) AS y"), records)
    out["read"] = run(sc, spark, work, "read", min_workers=1, tfrecords=records)
    print("RESULT " + json.dumps(out), flush=True)
    spark.stop()


if __name__ == "__main__":
    main(*sys.argv[1:3])
