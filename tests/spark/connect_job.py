"""Driver for test_connect.py: tfspark's entry points from a Spark Connect session.

    python connect_job.py WORK_DIR   -> prints one JSON line: RESULT {...}

Runs in its own process: a local Spark Connect server (``SparkSession.builder.remote``) cannot
share a JVM with the test session's classic SparkContext.
"""
import json
import sys

from pyspark.sql import SparkSession

from tfspark import InputMode, TFCluster, TFSparkError, tfrecord


def fit_in_memory(args, ctx):
    import tensorflow as tf
    strategy = ctx.multi_worker_mirrored_strategy()
    x = tf.random.stateless_normal((256, 4), seed=[1, ctx.worker_num])
    data = tf.data.Dataset.from_tensor_slices((x, tf.reduce_sum(x, 1))).batch(16).repeat()
    with strategy.scope():
        model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(1)])
        model.compile(optimizer=tf.keras.optimizers.SGD(0.05), loss="mse")
    history = model.fit(data, epochs=3, steps_per_epoch=8, verbose=0)
    print(f"{ctx.job_name}:{ctx.task_index} trained", flush=True)
    return {"loss": history.history["loss"], "weights": [w.tolist() for w in model.get_weights()]}


def count_fed_rows(args, ctx):
    feed = ctx.get_data_feed()
    rows = 0
    for x, y in feed.dataset(8, label="y").as_numpy_iterator():
        rows += len(y)
    return rows


def main(work: str) -> None:
    spark = SparkSession.builder.remote("local[3]").getOrCreate()
    result = {"session": type(spark).__module__,
              "driver_host": spark.conf.get("spark.driver.host", None)}

    cluster = TFCluster.run(spark, fit_in_memory, None, 2)
    trained = cluster.shutdown(timeout=300)
    result["weights_equal"] = trained[0]["weights"] == trained[1]["weights"]
    result["loss"] = [t["loss"] for t in trained]

    df = spark.range(0, 300, 1, 4).selectExpr("CAST(id AS double) AS x", "CAST(1 AS double) AS y")
    cluster = TFCluster.run(spark, count_fed_rows, None, 2, input_mode=InputMode.SPARK)
    cluster.train(df, num_epochs=1)
    result["fed_rows"] = cluster.shutdown(timeout=300)

    path = f"file://{work}/records"
    tfrecord.write(spark.range(0, 50, 1, 3).selectExpr("id", "id * 2 AS twice"), path)
    result["read_back"] = sorted(r.twice for r in tfrecord.read(spark, path).collect())

    errors = {}
    cluster = TFCluster.run(spark, count_fed_rows, None, 2, input_mode=InputMode.SPARK)
    for name, call in (("inference", lambda: cluster.inference(df)),
                       ("not_data", lambda: cluster.train([1, 2, 3]))):
        try:
            call()
        except TFSparkError as e:
            errors[name] = str(e)
    cluster.train(df.limit(10))
    cluster.shutdown(timeout=300)
    result["errors"] = errors
    print("RESULT " + json.dumps(result), flush=True)
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1])
