"""Streaming example: Kafka -> continuous training -> SavedModel versions -> a second query
scoring another Kafka stream with the newest version.

    python examples/streaming/kafka_streaming.py                       # embedded Spark + Kafka
    spark-submit --master spark://HOST:7077 --conf spark.executor.cores=2 \\
        --jars <spark-sql-kafka-0-10 jars> examples/streaming/kafka_streaming.py \\
        --bootstrap kafka1:9092 --base hdfs:///user/me/streaming

Records are JSON, ``{"x": [4 floats], "y": float}``; ``--produce N`` first writes N of them to
``--topic`` (and N/4 to ``--score_topic``) from a known linear rule, so the run can say how well
the model learned it. Without ``--bootstrap`` the example starts a local Kafka broker
(``tfspark.testing.kafka``, Kafka's jars from Maven Central; needs Java 17 and Maven) and puts
Spark's Kafka connector on ``spark.jars``.

1. **Training** (``cluster.train_stream``): each micro-batch of the training topic (at most
   ``--batch_records`` records) is fed to the TF workers and trained once by ``main_fun``'s loop
   over ``ctx.micro_batches``; the chief backs the model up with the batch id under
   ``<base>/backup`` and publishes a SavedModel version under ``<base>/export`` every
   ``--export_every`` micro-batches. Kill the job and run it again with the same ``--base``: the
   query resumes from ``<base>/checkpoint`` and no record is trained twice or skipped.
2. **Scoring** (``tfspark.predict(..., follow_versions=True)``), started once the first version
   exists: every micro-batch of the scoring topic is scored with the newest version, which
   training keeps replacing; each prediction says which version made it.
"""
import argparse
import json
import tempfile
import time

import numpy as np

from tfspark import InputMode, TFCluster, predict
from tfspark.session import get_session

#: The rule the synthetic records follow: y = x . WEIGHTS + BIAS
WEIGHTS, BIAS = [1.0, -2.0, 3.0, 0.5], 0.5


def main_fun(args, ctx):
    """On every TF worker: a linear model trained on each micro-batch, exactly once."""
    import tensorflow as tf
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        model = tf.keras.Sequential([tf.keras.Input((4,), name="x"), tf.keras.layers.Dense(1)])
        model.compile(optimizer=tf.keras.optimizers.SGD(0.05), loss="mse")
    batches = ctx.micro_batches(model, args.backup, export_dir=args.export,
                                export_every_batches=args.export_every)
    for batch in batches:  # ends when the query stops
        model.fit(batch.dataset(args.batch_size, label="y"), epochs=1)
    return {"last_batch_id": batches.last_batch_id, "trained": batches.batches_trained}


def produce(spark, bootstrap, topic, rows, seed):
    """Write ``rows`` JSON records following the rule to ``topic`` (a Spark batch write)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 4)).astype(np.float32)
    y = x @ np.array(WEIGHTS, np.float32) + BIAS
    records = [(json.dumps({"x": xi.tolist(), "y": float(yi)}),) for xi, yi in zip(x, y)]
    (spark.createDataFrame(records, "value string").write.format("kafka")
     .option("kafka.bootstrap.servers", bootstrap).option("topic", topic).save())


def kafka_stream(spark, bootstrap, topic, max_records):
    """The topic's records as a streaming DataFrame of ``x`` (array of 4 floats) and ``y``."""
    from pyspark.sql import functions as F
    raw = (spark.readStream.format("kafka").option("kafka.bootstrap.servers", bootstrap)
           .option("subscribe", topic).option("startingOffsets", "earliest")
           .option("maxOffsetsPerTrigger", max_records).load())
    parsed = raw.select(F.from_json(F.col("value").cast("string"),
                                    "x array<float>, y float").alias("r"))
    return parsed.select("r.x", "r.y")


def run(args):
    from tfspark.testing.kafka import KafkaBroker, connector_jars
    broker = None
    if not args.bootstrap:
        broker = KafkaBroker(tempfile.mkdtemp(prefix="tfspark-kafka-")).__enter__()
        args.bootstrap = broker.bootstrap
    base = args.base or tempfile.mkdtemp(prefix="tfspark-streaming-")
    args.backup, args.export = f"{base}/backup", f"{base}/export"
    conf = {} if args.no_connector_jars else {"spark.jars": ",".join(connector_jars())}
    spark = get_session("tfspark-streaming", args.master, local_slots=args.cluster_size + 2,
                        conf=conf)
    try:
        if args.produce:
            produce(spark, args.bootstrap, args.topic, args.produce, seed=1)
            produce(spark, args.bootstrap, args.score_topic, max(1, args.produce // 4), seed=2)
        started = time.monotonic()
        cluster = TFCluster.run(spark, main_fun, args, args.cluster_size,
                                input_mode=InputMode.SPARK, feed_mode="job")
        trigger = {"availableNow": True} if args.available_now else {
            "processingTime": args.trigger}
        training = cluster.train_stream(
            kafka_stream(spark, args.bootstrap, args.topic, args.batch_records),
            f"{base}/checkpoint", trigger=trigger, query_name="tfspark-training")

        # scoring starts once there is a version to score with, and follows the newer ones
        while training.version is None and training.isActive:
            time.sleep(0.5)
        scored = None
        if training.version is not None:
            scoring = predict(kafka_stream(spark, args.bootstrap, args.score_topic,
                                           args.batch_records // 4),
                              args.export, inputs={"x": "x"}, follow_versions=True)
            scored = (scoring.writeStream.format("parquet")
                      .option("path", f"{base}/predictions")
                      .option("checkpointLocation", f"{base}/scoring-checkpoint")
                      .trigger(processingTime=args.trigger).start())
        if args.seconds:
            training.awaitTermination(args.seconds)
            training.stop()
        else:
            training.awaitTermination()
        results = cluster.shutdown()
        secs = time.monotonic() - started
        summary = {"trained_rows": sum(h["rows"] for h in training.history),
                   "micro_batches": [h["batch_id"] for h in training.history],
                   "skipped": training.skipped, "version": training.version,
                   "secs": round(secs, 1), "results": results}
        if scored is not None:
            scored.processAllAvailable()
            scored.stop()
            rows = spark.read.parquet(f"{base}/predictions").toPandas()
            truth = np.stack(rows["x"].to_numpy()) @ np.array(WEIGHTS) + BIAS
            output = next(c for c in rows.columns if c not in ("x", "y", "model_version"))
            out = np.concatenate([np.ravel(v) for v in rows[output]]) if len(rows) else None
            summary.update(scored_rows=len(rows),
                           scored_by_version=rows["model_version"].value_counts().to_dict(),
                           mse=float(np.mean((out - truth) ** 2)) if len(rows) else None)
        print(f"trained {summary['trained_rows']} records in "
              f"{len(summary['micro_batches'])} micro-batches ({secs:.1f} s); newest version "
              f"{summary['version']}")
        if scored is not None:
            print(f"scored {summary['scored_rows']} records, by version: "
                  f"{summary['scored_by_version']}; MSE of the predictions: {summary['mse']:.4f}")
        print("RESULT " + json.dumps(summary, default=str), flush=True)
    finally:
        spark.stop()
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (default: start a local "
                                            "broker)")
    parser.add_argument("--topic", default="tfspark-train")
    parser.add_argument("--score_topic", default="tfspark-score")
    parser.add_argument("--produce", type=int, default=4000,
                        help="write this many synthetic records to --topic first (0: none)")
    parser.add_argument("--base", help="folder (local or hdfs://) for the checkpoint, backup, "
                                       "versions and predictions (default: a temporary one)")
    parser.add_argument("--cluster_size", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=32, help="per-worker batch")
    parser.add_argument("--batch_records", type=int, default=500,
                        help="records per micro-batch at most (maxOffsetsPerTrigger)")
    parser.add_argument("--export_every", type=int, default=2,
                        help="publish a SavedModel version every N micro-batches")
    parser.add_argument("--trigger", default="1 second", help="micro-batch interval")
    parser.add_argument("--available_now", action=argparse.BooleanOptionalAction, default=True,
                        help="train on what the topic holds, then stop (--no-available_now: "
                             "keep training as records arrive, for --seconds or until killed)")
    parser.add_argument("--seconds", type=float, default=0,
                        help="with --no-available_now: stop after this long (0: never)")
    parser.add_argument("--master", default=None)
    parser.add_argument("--no_connector_jars", action="store_true",
                        help="Spark has the Kafka connector already (spark-submit --jars/"
                             "--packages): do not add tfspark.testing.kafka's")
    run(parser.parse_args())
