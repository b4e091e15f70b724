"""A streaming training job for the streaming tests, written the way users write it: a
counting model (rows and the sum of their ids, counted inside ``train_step``) trained on each
micro-batch of a streaming query through ``ctx.micro_batches``.

The counts per micro-batch live in the model's own (checkpointed) variables, so what a restarted
cluster or query restores is exactly what was trained: a batch trained twice or skipped shows in
the final counts, whatever the layers below say they delivered.

Run as a driver: ``python stream_job.py MASTER INPUT_DIR CHECKPOINT BACKUP OUT [TRIGGER]``.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time

#: Per-batch-id counters (batch ids below this many).
SLOTS = 64


def counting_model(tf):
    class Counting(tf.keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = tf.keras.layers.Dense(1)
            on_read = dict(synchronization=tf.VariableSynchronization.ON_READ,
                           aggregation=tf.VariableAggregation.SUM, trainable=False)
            self.rows = tf.Variable(0.0, dtype=tf.float64, **on_read)
            self.id_sum = tf.Variable(0.0, dtype=tf.float64, **on_read)
            # restored with the backup: what was trained, per batch id (all workers' rows)
            self.batch_rows = tf.Variable(tf.zeros([SLOTS], tf.float64), trainable=False)
            self.batch_ids = tf.Variable(tf.zeros([SLOTS], tf.float64), trainable=False)
            self.batch_steps = tf.Variable(tf.zeros([SLOTS], tf.float64), trainable=False)

        def call(self, x):
            return self.dense(tf.reshape(tf.cast(x, tf.float32), [-1, 1]) * 0.0)

        def train_step(self, data):
            ids = data[0]
            self.rows.assign_add(tf.cast(tf.size(ids), tf.float64))
            self.id_sum.assign_add(tf.reduce_sum(tf.cast(ids, tf.float64)))
            return super().train_step(data)

        def record(self, batch_id, steps):
            slot = tf.one_hot(batch_id, SLOTS, dtype=tf.float64)
            self.batch_rows.assign_add(slot * self.rows.read_value())
            self.batch_ids.assign_add(slot * self.id_sum.read_value())
            self.batch_steps.assign_add(slot * float(steps))
            self.rows.assign(0.0)
            self.id_sum.assign(0.0)

    model = Counting()
    model.compile(optimizer=tf.keras.optimizers.SGD(0.01), loss="mse")
    return model


def main_fun(args, ctx):
    import tensorflow as tf
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        model = counting_model(tf)
        model.build((None, 1))
    stream = ctx.micro_batches(model, args["backup"], export_dir=args.get("export"),
                               export_every_batches=args.get("export_every"))
    held = 0  # micro-batches on this node's disk at once, at most
    for batch in stream:
        if batch.batch_id == args.get("slow_at"):
            time.sleep(3)  # a slow cluster: Spark's next micro-batches must wait, not pile up
        spill = os.path.dirname(os.path.dirname(batch._fed.paths()[0])) if batch.rows_here \
            else None
        held = max(held, len([d for d in os.listdir(spill) if d.startswith("train-")])
                   if spill else 0)
        dataset = batch.dataset(args.get("batch_size", 8), label="y")
        before = int(model.optimizer.iterations.numpy())
        model.fit(dataset, epochs=1, verbose=0)
        steps = int(model.optimizer.iterations.numpy()) - before
        if steps != batch.steps_per_epoch:
            raise AssertionError(f"{steps} steps on micro-batch {batch.batch_id}, expected "
                                 f"{batch.steps_per_epoch}")
        model.record(batch.batch_id, steps)
        if batch.batch_id == args.get("fail_at"):
            raise ValueError(f"main_fun gave up at micro-batch {batch.batch_id}")
        kill = args.get("kill_worker_at")
        if kill is not None and batch.batch_id == kill and ctx.attempt == 0 \
                and ctx.worker_num == 1:
            os.kill(os.getpid(), signal.SIGKILL)  # before the batch is backed up
    return {"rows": model.batch_rows.numpy().tolist(), "ids": model.batch_ids.numpy().tolist(),
            "steps": model.batch_steps.numpy().tolist(), "last": stream.last_batch_id,
            "trained": stream.batches_trained, "exported": stream.exported,
            "worker": ctx.worker_num, "held": held}


def pss_main_fun(args, ctx):
    """ParameterServerStrategy: the chief trains each micro-batch on the workers' shares."""
    import tensorflow as tf
    strategy = ctx.parameter_server_strategy()
    with strategy.scope():
        model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(1)])
        model.compile(optimizer=tf.keras.optimizers.SGD(0.05), loss="mse")
    losses = []
    for batch in ctx.micro_batches(model, args["backup"], export_dir=args["export"],
                                   export_every_batches=2):
        fit = model.fit(tf.keras.utils.experimental.DatasetCreator(batch.dataset_fn(16, "y")),
                        epochs=1, steps_per_epoch=batch.steps_per_epoch)
        losses.append((batch.batch_id, fit.history["loss"][-1]))
    return losses


def write_parts(folder, parts, start=0, first=0):
    """Parquet files of (x = id, y), one per part size, ids consecutive from ``start``, named
    and dated in order from part number ``first`` (the file source reads them in that order)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    os.makedirs(folder, exist_ok=True)
    for i, size in enumerate(parts, start=first):
        ids = list(range(start, start + size))
        start += size
        table = pa.table({"x": pa.array(ids, pa.float64()), "y": pa.array([0.0] * size)})
        tmp = os.path.join(folder, f".part-{i:04d}.tmp")
        pq.write_table(table, tmp)
        os.utime(tmp, (1_700_000_000 + i, 1_700_000_000 + i))
        os.replace(tmp, os.path.join(folder, f"part-{i:04d}.parquet"))
    return start


def stream_of(spark, folder, files_per_batch=1):
    from pyspark.sql.types import DoubleType, StructField, StructType
    schema = StructType([StructField("x", DoubleType()), StructField("y", DoubleType())])
    return (spark.readStream.schema(schema).option("maxFilesPerTrigger", files_per_batch)
            .parquet(folder))


if __name__ == "__main__":
    from pyspark.sql import SparkSession

    from tfspark import InputMode, TFCluster
    master, folder, checkpoint, backup, out = sys.argv[1:6]
    trigger = json.loads(sys.argv[6]) if len(sys.argv) > 6 else {"availableNow": True}
    spark = (SparkSession.builder.master(master).appName("stream-job")
             .config("spark.ui.enabled", "false").getOrCreate())
    cluster = TFCluster.run(spark, main_fun, {"backup": backup, "batch_size": 4}, 2,
                            input_mode=InputMode.SPARK, feed_mode="job")
    training = cluster.train_stream(stream_of(spark, folder), checkpoint, trigger=trigger)
    training.awaitTermination()
    results = cluster.shutdown()
    print("RESULT " + json.dumps({"history": training.history, "skipped": training.skipped,
                                  "results": results}), flush=True)
    spark.stop()
