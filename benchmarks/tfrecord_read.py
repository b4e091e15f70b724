"""``tfspark.tfrecord.read`` against TensorFlow's own reader, rows/s per core on the same files.

    .venv/bin/python benchmarks/tfrecord_read.py [--rows 100000] [--features 784] [--files 4]

Writes ``--rows`` rows (an ``array<float>`` column of ``--features`` values and a ``bigint``
label) as ``--files`` TFRecord files of ``tf.train.Example`` with ``tfspark.tfrecord.write``
into a temporary folder, then reads them back, one core each:

(a) tfspark: ``tfrecord.read(spark, path)`` on ``local[1]`` Spark;
(b) TensorFlow: ``tf.data.TFRecordDataset(files).batch(1024).map(tf.io.parse_example)``
    with one intra-op and one inter-op thread;
(c) Spark alone: rows of the same shape that a ``mapInArrow`` yields ready-made (nothing read,
    nothing decoded): Spark's Arrow-to-row hand-over alone, the ceiling of any reader that runs
    inside Spark's Python workers.

each consumed two ways, the same on both sides:

* **decoded**: every row decoded and held as the framework's own data -- Spark writes the
  DataFrame to the ``noop`` sink (each row copied into Spark's row format), TensorFlow
  iterates the parsed batches (dense tensors);
* **summed**: every value used -- Spark ``sum(label)``, ``sum(aggregate(image, ...))``;
  TensorFlow ``reduce_sum`` of both in the same ``map``.

Each is timed twice (the page cache is warm for all after the write); the best is printed,
with (a) / (b) per consumer. Goal (issue 14): >= 1.0.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time

os.environ["PYSPARK_PYTHON"] = sys.executable
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def best_rate(rows: int, run, repeats: int = 2) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return rows / best


def _ready_made(batches, rows: int, features: int):
    """mapInArrow body: ``rows`` rows of (label, image) from one numpy array, per partition."""
    import numpy as np
    import pyarrow as pa
    for _ in batches:
        pass
    image = np.random.default_rng(0).random((4096, features), dtype=np.float32)
    batch = pa.record_batch({
        "label": pa.array(np.arange(4096, dtype=np.int64)),
        "image": pa.ListArray.from_arrays(
            pa.array(np.arange(4097, dtype=np.int32) * features), pa.array(image.ravel()))})
    for start in range(0, rows, 4096):
        yield batch.slice(0, min(4096, rows - start))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=784)
    parser.add_argument("--files", type=int, default=4)
    args = parser.parse_args()

    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F
    from tfspark import tfrecord

    spark = (SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false")
             .config("spark.driver.memory", "4g").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "records")
        data = (spark.range(args.rows, numPartitions=args.files)
                .select(F.col("id").alias("label"),
                        F.expr(f"transform(sequence(1, {args.features}), "
                               "i -> cast(rand() as float))").alias("image")))
        files = tfrecord.write(data, path)
        local_files = [f[len("file://"):] if f.startswith("file://") else f for f in files]

        def summed(df) -> None:
            df.select(F.sum("label"), F.sum(F.aggregate(
                "image", F.lit(0.0).cast("double"), lambda acc, x: acc + x))).collect()

        def decoded(df) -> None:
            df.write.format("noop").mode("overwrite").save()

        def ready_made():
            """The same rows, ready-made in the Python worker (nothing read or decoded)."""
            return spark.range(args.files, numPartitions=args.files).mapInArrow(
                functools.partial(_ready_made, rows=args.rows // args.files,
                                  features=args.features), "label long, image array<float>")

        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        spec = {"label": tf.io.FixedLenFeature([], tf.int64),
                "image": tf.io.FixedLenFeature([args.features], tf.float32)}

        def tf_read(parse) -> None:
            dataset = tf.data.TFRecordDataset(local_files).batch(1024).map(parse)
            options = tf.data.Options()
            options.threading.private_threadpool_size = 1
            for _ in dataset.with_options(options):
                pass

        def tf_decoded(records):
            return tf.io.parse_example(records, spec)

        def tf_summed(records):
            parsed = tf.io.parse_example(records, spec)
            return tf.reduce_sum(parsed["label"]), tf.reduce_sum(
                tf.cast(parsed["image"], tf.float64))

        ready_rows = args.rows // args.files * args.files
        rates = {}
        for name, spark_consumer, tf_parse in (("decoded", decoded, tf_decoded),
                                               ("summed", summed, tf_summed)):
            rates[name] = (
                best_rate(args.rows, lambda: spark_consumer(tfrecord.read(spark, path))),
                best_rate(args.rows, functools.partial(tf_read, tf_parse)),
                best_rate(ready_rows, lambda: spark_consumer(ready_made())))
        mb = args.rows * (args.features * 4 + 8) / 1e6
        print(f"\n{args.rows:,} rows x {args.features} float32 + int64 label "
              f"({mb:.0f} MB of values) in {len(files)} files, one core each, rows/s")
        print(f"  {'':30}{'decoded':>12}{'summed':>12}")
        for i, label in enumerate(("(a) tfspark.tfrecord.read", "(b) TFRecordDataset+parse",
                                   "(c) Spark, rows ready-made")):
            print(f"  {label:30}" + "".join(f"{rates[n][i]:>12,.0f}" for n in rates))
        for name, (ours, theirs, ceiling) in rates.items():
            print(f"  {name}: (a) / (b) = {ours / theirs:.2f} (goal >= 1.0); "
                  f"(a) / (c) = {ours / ceiling:.2f}; (c) / (b) = {ceiling / theirs:.2f}")
    spark.stop()


if __name__ == "__main__":
    main()
