"""``tfspark.tfrecord.read`` against TensorFlow's own reader, rows/s per core on the same files.

    .venv/bin/python benchmarks/tfrecord_read.py [--rows 100000] [--features 784] [--files 4]

Writes ``--rows`` rows (an ``array<float>`` column of ``--features`` values and a ``bigint``
label) as ``--files`` TFRecord files of ``tf.train.Example`` with ``tfspark.tfrecord.write``
into a temporary folder, then reads them back, one core each:

(a) tfspark: ``tfrecord.read(spark, path)`` on ``local[1]`` Spark, every value used
    (``sum(label)``, ``sum(aggregate(image, ...))``: the rows are decoded into Spark's rows);
(b) TensorFlow: ``tf.data.TFRecordDataset(files).batch(1024).map(tf.io.parse_example)``
    with one intra-op and one inter-op thread, every batch materialized;
(c) Spark alone: the same query over rows of the same shape that a ``mapInArrow`` yields
    ready-made (nothing read, nothing decoded): Spark's Arrow-to-row hand-over and the query,
    the ceiling of any reader that runs inside Spark's Python workers.

Each is timed twice (the page cache is warm for both after the write); the best is printed,
with (a) / (b). Goal (issue 14): >= 1.0.
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

        def tfspark_read() -> None:
            df = tfrecord.read(spark, path)
            df.select(F.sum("label"), F.sum(F.aggregate(
                "image", F.lit(0.0).cast("double"), lambda acc, x: acc + x))).collect()

        def spark_ceiling() -> None:
            """The same rows, ready-made in the Python worker (nothing read or decoded): what
            Spark's Arrow hand-over and the query cost alone -- no Python reader beats it."""
            ready = spark.range(args.files, numPartitions=args.files).mapInArrow(
                functools.partial(_ready_made, rows=args.rows // args.files,
                                  features=args.features), "label long, image array<float>")
            ready.select(F.sum("label"), F.sum(F.aggregate(
                "image", F.lit(0.0).cast("double"), lambda acc, x: acc + x))).collect()

        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        spec = {"label": tf.io.FixedLenFeature([], tf.int64),
                "image": tf.io.FixedLenFeature([args.features], tf.float32)}

        def tf_read() -> None:
            dataset = (tf.data.TFRecordDataset(local_files).batch(1024)
                       .map(lambda records: tf.io.parse_example(records, spec)))
            options = tf.data.Options()
            options.threading.private_threadpool_size = 1
            for _ in dataset.with_options(options):
                pass

        ours = best_rate(args.rows, tfspark_read)
        ceiling = best_rate(args.rows // args.files * args.files, spark_ceiling)
        theirs = best_rate(args.rows, tf_read)
        mb = args.rows * (args.features * 4 + 8) / 1e6
        print(f"\n{args.rows:,} rows x {args.features} float32 + int64 label "
              f"({mb:.0f} MB of values) in {len(files)} files, one core each")
        print(f"  (a) tfspark.tfrecord.read   {ours:>10,.0f} rows/s")
        print(f"  (b) TFRecordDataset+parse   {theirs:>10,.0f} rows/s")
        print(f"  (c) Spark, rows ready-made  {ceiling:>10,.0f} rows/s  (no reading or decoding)")
        print(f"  (a) / (b) = {ours / theirs:.2f} (goal >= 1.0)")
        print(f"  (a) / (c) = {ours / ceiling:.2f} (the share of Spark's own ceiling)")
        print(f"  (c) / (b) = {ceiling / theirs:.2f} (the best any reader inside Spark can do)")
    spark.stop()


if __name__ == "__main__":
    main()
