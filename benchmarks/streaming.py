"""Streaming training against a static feed of the same rows, and Kafka-to-prediction latency.

    python benchmarks/streaming.py [--rows 200000] [--parts 10] [--rounds 3]

1. **Sustained training rate**: the same model (32 floats -> Dense 64 -> Dense 1, per-worker
   batch 256, 2 workers under MultiWorkerMirroredStrategy) trains once on ``--rows`` rows fed
   as a static DataFrame (``cluster.train(df)``, one epoch) and once from a streaming query over
   the same rows as ``--parts`` parquet files, one micro-batch each (``cluster.train_stream``,
   ``ctx.micro_batches``, a backup after every micro-batch). Rate = rows / (the chief's time at
   its last training step - the driver's time when it handed the data over). The two alternate,
   ``--repeats`` times each; prints each run and the ratio of the medians (goal: streaming >=
   0.8 of static).
2. **Latency**: a continuous training query on a Kafka topic (a local broker,
   ``tfspark.testing.kafka``) publishes a version after every micro-batch; a scoring query on a
   second topic follows the versions. One record is written to the training topic; the latency
   is the time until a prediction is made by a version trained on it. ``--rounds`` records
   (after one that warms the scoring workers up), median and max.
Runs on an embedded ``local[4]`` Spark.
"""
import argparse
import os
import sys
import tempfile
import threading
import time

import numpy as np

from tfspark import InputMode, TFCluster, predict
from tfspark.session import get_session

FEATURES = 32


def _model(tf):
    model = tf.keras.Sequential([tf.keras.Input((FEATURES,), name="x"),
                                 tf.keras.layers.Dense(64, activation="relu"),
                                 tf.keras.layers.Dense(1)])
    model.compile(optimizer=tf.keras.optimizers.SGD(0.01), loss="mse")
    return model


def static_fun(args, ctx):
    import tensorflow as tf
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        model = _model(tf)
    model.fit(ctx.get_data_feed().dataset(256, label="y"), epochs=1)
    return time.time()


def stream_fun(args, ctx):
    import tensorflow as tf
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        model = _model(tf)
    last = None
    for batch in ctx.micro_batches(model, args["backup"], export_dir=args.get("export"),
                                   export_every_batches=args.get("every")):
        model.fit(batch.dataset(256, label="y"), epochs=1)
        last = time.time()
    return last


def write_parts(folder, rows, parts):
    import pyarrow as pa
    import pyarrow.parquet as pq
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(parts):
        n = rows // parts
        x = rng.normal(size=(n, FEATURES)).astype(np.float32)
        table = pa.table({"x": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), FEATURES),
                          "y": pa.array(x.sum(axis=1))})
        pq.write_table(table, os.path.join(folder, f"part-{i:04d}.parquet"))
        os.utime(os.path.join(folder, f"part-{i:04d}.parquet"), (1.7e9 + i, 1.7e9 + i))


def schema():
    from pyspark.sql.types import ArrayType, FloatType, StructField, StructType
    return StructType([StructField("x", ArrayType(FloatType(), False)),
                       StructField("y", FloatType())])


def _static_secs(spark, df):
    cluster = TFCluster.run(spark, static_fun, {}, 2, input_mode=InputMode.SPARK,
                            feed_mode="job")
    started = time.time()
    cluster.train(df)
    return max(cluster.shutdown()) - started


def _stream_secs(spark, folder, work):
    os.makedirs(work)
    cluster = TFCluster.run(spark, stream_fun, {"backup": os.path.join(work, "backup")}, 2,
                            input_mode=InputMode.SPARK, feed_mode="job")
    stream = spark.readStream.schema(schema()).option("maxFilesPerTrigger", 1).parquet(folder)
    started = time.time()
    training = cluster.train_stream(stream, os.path.join(work, "ck"),
                                    trigger={"availableNow": True})
    training.awaitTermination()
    return max(cluster.shutdown()) - started, len(training.history)


def throughput(spark, rows, parts, repeats, work):
    """Static and streaming runs alternate, ``repeats`` of each (the first of either pays the
    JVM's and TF's warm-up); each side's median is compared."""
    folder = os.path.join(work, "parts")
    write_parts(folder, rows, parts)
    static_df = spark.read.schema(schema()).parquet(folder).cache()
    static_df.count()  # both read the rows from memory-speed storage: the feed is what differs
    static, streaming = [], []
    for run in range(repeats):
        static.append(_static_secs(spark, static_df))
        secs, batches = _stream_secs(spark, folder, os.path.join(work, f"stream-{run}"))
        streaming.append(secs)
    static_df.unpersist()
    n = rows // parts * parts
    for name, times in (("static feed", static), (f"streaming ({batches} micro-batches)",
                                                    streaming)):
        print(f"{name + ':':36} {n} rows in " + ", ".join(f"{t:.1f}" for t in times)
              + f" s: median {n / np.median(times):.0f} rows/s")
    print(f"streaming / static rows/s (medians): {np.median(static) / np.median(streaming):.2f}"
          " (goal >= 0.8)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--parts", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3,
                        help="static and streaming runs, alternating, of each")
    parser.add_argument("--skip_latency", action="store_true")
    parser.add_argument("--skip_throughput", action="store_true")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="tfspark-bench-streaming-")
    jars = []
    if not args.skip_latency:
        from tfspark.testing.kafka import connector_jars
        jars = connector_jars()
    spark = get_session("tfspark-bench-streaming", "local[4]",
                        conf={"spark.jars": ",".join(jars)} if jars else None)
    try:
        if not args.skip_throughput:
            throughput(spark, args.rows, args.parts, args.repeats, work)
        if not args.skip_latency:
            from tfspark.testing.kafka import KafkaBroker
            with KafkaBroker(os.path.join(work, "kafka")) as broker:
                kafka_latency(spark, broker.bootstrap, args.rounds, work)
    finally:
        spark.stop()


def _produce(spark, bootstrap, topic, x):
    import json
    records = [(json.dumps({"x": row.tolist(), "y": float(row.sum())}),) for row in x]
    (spark.createDataFrame(records, "value string").write.format("kafka")
     .option("kafka.bootstrap.servers", bootstrap).option("topic", topic).save())


def _kafka(spark, bootstrap, topic):
    from pyspark.sql import functions as F
    raw = (spark.readStream.format("kafka").option("kafka.bootstrap.servers", bootstrap)
           .option("subscribe", topic).option("startingOffsets", "earliest").load())
    return raw.select(F.from_json(F.col("value").cast("string"),
                                  "x array<float>, y float").alias("r")).select("r.x", "r.y")


def kafka_latency(spark, bootstrap, rounds, work):
    """One record into the training topic -> the first prediction by a version trained on it."""
    rng = np.random.default_rng(1)
    export = os.path.join(work, "export")
    _produce(spark, bootstrap, "train", rng.normal(size=(64, FEATURES)).astype(np.float32))
    cluster = TFCluster.run(spark, stream_fun, {"backup": os.path.join(work, "kb"),
                                                "export": export, "every": 1}, 2,
                            input_mode=InputMode.SPARK, feed_mode="job")
    training = cluster.train_stream(_kafka(spark, bootstrap, "train"),
                                    os.path.join(work, "kck"),
                                    trigger={"processingTime": "100 milliseconds"})
    while training.version is None:
        time.sleep(0.05)
    _produce(spark, bootstrap, "score", rng.normal(size=(1, FEATURES)).astype(np.float32))
    seen = []  # (time, version) of every scored row
    scoring = (predict(_kafka(spark, bootstrap, "score"), export, follow_versions=True)
               .writeStream.trigger(processingTime="100 milliseconds")
               .option("checkpointLocation", os.path.join(work, "sck"))
               .foreachBatch(lambda df, _: seen.extend(
                   (time.time(), r.model_version) for r in df.select("model_version").collect()))
               .start())
    stop = threading.Event()

    def score_records():  # a steady trickle of records to score
        while not stop.is_set():
            _produce(spark, bootstrap, "score", rng.normal(size=(1, FEATURES)).astype(np.float32))

    threading.Thread(target=score_records, daemon=True).start()
    latencies = []
    try:
        for _ in range(rounds + 1):  # the first warms the scoring workers up (a model load)
            before = len(training.history)
            _produce(spark, bootstrap, "train", rng.normal(size=(1, FEATURES)).astype(np.float32))
            sent = time.time()
            while len(training.history) == before or training.history[-1]["version"] is None:
                time.sleep(0.02)
            version = int(training.history[-1]["version"].rstrip("/").rsplit("/", 1)[-1])
            while not any(v >= version and t >= sent for t, v in seen):
                time.sleep(0.02)
            latencies.append(min(t for t, v in seen if v >= version and t >= sent) - sent)
        latencies = latencies[1:]
    finally:
        stop.set()
        scoring.stop()
        training.stop()
        cluster.shutdown()
    print(f"Kafka record -> prediction by a version trained on it: median "
          f"{np.median(latencies):.2f} s, max {max(latencies):.2f} s over {rounds} records "
          "(training and scoring triggers every 100 ms)")


if __name__ == "__main__":
    sys.exit(main())
