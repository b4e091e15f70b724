"""Rows/s of tfspark.tfrecord.write on local[N] vs TF's own TFRecordWriter in one process.

    .venv/bin/python benchmarks/tfrecord_write.py [--rows 200000] [--cores 2]

Both write the same rows: id (long), label (int), weight (double), name (string) and a
784-float array.  The DataFrame is generated and cached before the clock starts; TF gets the
same data as numpy arrays in memory and builds one ``tf.train.Example`` per row.
"""
from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import tempfile
import time

import numpy as np

os.environ["PYSPARK_PYTHON"] = sys.executable
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

WIDTH = 784


def _rows(start: int, stop: int):
    rng = np.random.default_rng(start)
    n = stop - start
    ids = np.arange(start, stop, dtype=np.int64)
    return (ids, (ids % 10).astype(np.int32), rng.random(n),
            [f"row-{i}" for i in ids], rng.random((n, WIDTH), dtype=np.float32))


def _generate(batches, total: int, parts: int):
    import pyarrow as pa
    from pyspark import TaskContext
    part = TaskContext.get().partitionId()
    lo, hi = part * total // parts, (part + 1) * total // parts
    for start in range(lo, hi, 10000):
        ids, label, weight, name, feats = _rows(start, min(hi, start + 10000))
        n = len(ids)
        yield pa.record_batch({
            "id": ids, "label": label, "weight": weight, "name": pa.array(name),
            "features": pa.ListArray.from_arrays(
                pa.array(np.arange(n + 1, dtype=np.int32) * WIDTH), pa.array(feats.ravel()))})
    for _ in batches:
        pass


def bench_spark(rows: int, cores: int, out: str) -> float:
    from pyspark.sql import SparkSession
    from pyspark import StorageLevel
    from tfspark import tfrecord
    spark = (SparkSession.builder.master(f"local[{cores}]").appName("tfrecord-bench")
             .config("spark.driver.memory", "6g").config("spark.ui.enabled", "false")
             .config("spark.driver.host", "127.0.0.1")
             .config("spark.driver.bindAddress", "127.0.0.1").getOrCreate())
    try:
        schema = ("id long, label int, weight double, name string, "
                  "features array<float>")
        df = spark.range(cores, numPartitions=cores).mapInArrow(
            functools.partial(_generate, total=rows, parts=cores), schema)
        df = df.persist(StorageLevel.MEMORY_AND_DISK)
        assert df.count() == rows
        tfrecord.write(df.limit(100), out + "-warmup", mode="overwrite")  # start Python workers
        start = time.perf_counter()
        tfrecord.write(df, out, mode="overwrite")
        elapsed = time.perf_counter() - start
        df.unpersist()
    finally:
        spark.stop()
    return rows / elapsed


def bench_tf(rows: int, out: str) -> float:
    import tensorflow as tf
    ids, label, weight, name, feats = _rows(0, rows)
    start = time.perf_counter()
    with tf.io.TFRecordWriter(out) as writer:
        for i in range(rows):
            example = tf.train.Example(features=tf.train.Features(feature={
                "id": tf.train.Feature(int64_list=tf.train.Int64List(value=[ids[i]])),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label[i]])),
                "weight": tf.train.Feature(float_list=tf.train.FloatList(value=[weight[i]])),
                "name": tf.train.Feature(bytes_list=tf.train.BytesList(
                    value=[name[i].encode()])),
                "features": tf.train.Feature(float_list=tf.train.FloatList(value=feats[i])),
            }))
            writer.write(example.SerializeToString())
    return rows / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="tfrecord-bench-")
    try:
        spark_rate = bench_spark(args.rows, args.cores, os.path.join(work, "spark"))
        tf_rate = bench_tf(args.rows, os.path.join(work, "tf.tfrecord"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratio = spark_rate / tf_rate
    print(f"rows: {args.rows} x (4 scalars + {WIDTH} floats)")
    print(f"tfspark.tfrecord.write, local[{args.cores}]: {spark_rate:10.0f} rows/s")
    print(f"tf.io.TFRecordWriter, 1 process:      {tf_rate:10.0f} rows/s")
    print(f"ratio: {ratio:.2f}x   per core used: {ratio / args.cores:.2f}x")


if __name__ == "__main__":
    main()
