"""Driver for test_speculation.py: a tfspark job on a cluster where Spark speculates eagerly.

    python speculation_job.py MASTER_URL WORK_DIR   -> prints one JSON line: RESULT {...}
"""
import json
import os
import sys
import time

from pyspark.sql import SparkSession

from tfspark import TFCluster, export, tfrecord

SLOW_SECS = 6.0


def slow_first_attempt(batches):
    """Partition 0's first attempt takes SLOW_SECS, so Spark speculates a copy of it."""
    from pyspark import TaskContext
    task = TaskContext.get()
    if task.partitionId() == 0 and task.attemptNumber() == 0:
        time.sleep(SLOW_SECS)
    yield from batches


def attempts_that_won(batches):
    from pyspark import TaskContext
    import pyarrow as pa
    task = TaskContext.get()
    if task.partitionId() == 0 and task.attemptNumber() == 0:
        time.sleep(SLOW_SECS)
    for _ in batches:
        pass
    yield pa.RecordBatch.from_pydict({"partition": [task.partitionId()],
                                      "attempt": [task.attemptNumber()]})


def main_fun(args, ctx):
    import tensorflow as tf
    with open(os.path.join(args["starts"], f"{ctx.worker_num}-{os.getpid()}"), "w") as f:
        f.write(ctx.job_name)
    if ctx.worker_num == 1:
        time.sleep(SLOW_SECS)  # a straggler, as speculation would see it
    strategy = ctx.multi_worker_mirrored_strategy()
    with strategy.scope():
        model = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
    x = tf.ones((64, 2))
    model.fit(tf.data.Dataset.from_tensor_slices((x, x[:, 0])).batch(8), epochs=1, verbose=0)
    return export.export_saved_model(model, args["export"], ctx)


def main(master: str, work: str) -> None:
    spark = (SparkSession.builder.master(master).appName("tfspark-speculation")
             .config("spark.speculation", "true")
             .config("spark.speculation.interval", "100ms")
             .config("spark.speculation.quantile", "0.5")
             .config("spark.speculation.multiplier", "1.5")
             .config("spark.speculation.minTaskRuntime", "1s")
             .config("spark.speculation.efficiency.enabled", "false")
             .config("spark.executor.cores", "2").config("spark.executor.memory", "1g")
             .config("spark.driver.host", "127.0.0.1")
             .config("spark.driver.bindAddress", "127.0.0.1")
             .config("spark.ui.enabled", "false").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    df = spark.range(0, 400, numPartitions=4).selectExpr("id", "id * 2 AS twice")
    # the set-up speculates: partition 0's speculative copy wins
    won = df.mapInArrow(attempts_that_won, "partition long, attempt long").collect()
    speculated = [r.attempt for r in won if r.partition == 0]

    path = f"file://{work}/records"
    tfrecord.write(df.mapInArrow(slow_first_attempt, df.schema), path)
    parts = sorted(f for f in os.listdir(f"{work}/records") if f.startswith("part-"))
    ids = sorted(r.id for r in tfrecord.read(spark, path).collect())

    starts = os.path.join(work, "starts")
    os.makedirs(starts)
    cluster = TFCluster.run(spark.sparkContext, main_fun,
                            {"starts": starts, "export": f"file://{work}/export"}, 2)
    exported = cluster.shutdown(timeout=300)
    print("RESULT " + json.dumps({
        "speculated": speculated, "parts": parts, "ids": ids,
        "starts": sorted(os.listdir(starts)), "exported": exported,
        "versions": export.versions(f"file://{work}/export"),
        "attempts": len(cluster.attempts)}), flush=True)
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
