"""Driver for test_connect.py: tfspark's entry points from a Spark Connect session.

    python connect_job.py WORK_DIR   -> prints one JSON line: RESULT {...}

Runs in its own process: a local Spark Connect server (``SparkSession.builder.remote``) cannot
share a JVM with the test session's classic SparkContext.
"""
import json
import os
import sys

from pyspark.sql import SparkSession

from tfspark import InputMode, NodeError, TFCluster, TFSparkError, tfrecord


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


def fail_after_output(args, ctx):
    print(f"{ctx.job_name}:{ctx.task_index} about to fail", flush=True)
    if ctx.worker_num == 1:
        raise ValueError("worker 1 gives up")
    return ctx.worker_num


def coordinate(args, ctx):
    """ParameterServerStrategy: the chief trains a few steps on 1 ps + 1 worker."""
    import tensorflow as tf
    strategy = ctx.parameter_server_strategy()

    def dataset_fn(input_context):
        x = tf.random.stateless_normal((256, 4), seed=[7, input_context.input_pipeline_id])
        return tf.data.Dataset.from_tensor_slices((x, tf.reduce_sum(x, 1))).batch(32).repeat()

    with strategy.scope():
        model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(1)])
        model.compile(optimizer=tf.keras.optimizers.SGD(0.05), loss="mse")
    history = model.fit(tf.keras.utils.experimental.DatasetCreator(dataset_fn), epochs=2,
                        steps_per_epoch=8)
    return history.history["loss"]


def predict_under_connect(spark, work: str) -> dict:
    """tfspark.predict from a Connect client: a Keras model saved here, scored by Spark."""
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import numpy as np
    import tensorflow as tf

    from tfspark import predict
    model = tf.keras.Sequential([tf.keras.Input((2,), name="x"),
                                 tf.keras.layers.Dense(1, name="y")])
    model.save(f"{work}/model/1", save_format="tf")
    x = np.arange(20, dtype="float32").reshape(10, 2)
    df = spark.createDataFrame([(i, x[i].tolist()) for i in range(10)], "id long, x array<float>")
    rows = sorted(predict(df, f"{work}/model").collect(), key=lambda r: r.id)
    return {"max_error": float(np.abs(np.array([r.y for r in rows]) -
                                      model.predict(x, verbose=0)).max()),
            "columns": [*rows[0].asDict()]}


def detached(spark, result: dict) -> None:
    """Executors that cannot reach this client (an address nothing answers on)."""
    os.environ["TFSPARK_CLIENT_HOST"] = "192.0.2.1"  # TEST-NET-1: never routed
    cluster = TFCluster.run(spark, fit_in_memory, None, 2)
    trained = cluster.shutdown(timeout=300)
    result["detached_weights_equal"] = trained[0]["weights"] == trained[1]["weights"]
    result["detached_history"] = cluster.history
    try:
        TFCluster.run(spark, count_fed_rows, None, 2, input_mode=InputMode.SPARK, feed_mode="job")
    except TFSparkError as e:
        result["detached_spark_input"] = str(e)
    # feed_mode="auto" feeds in the stage: executors only talk to each other
    fed = TFCluster.run(spark, count_fed_rows, None, 2, input_mode=InputMode.SPARK)
    fed.train(spark.range(0, 90, 1, 3).selectExpr("CAST(id AS double) AS x", "1.0D AS y"))
    result["detached_fed_rows"] = fed.shutdown(timeout=300)
    try:
        TFCluster.run(spark, fail_after_output, None, 2, max_restarts=0).shutdown(timeout=300)
    except NodeError as e:
        result["detached_error"] = {"text": str(e), "traceback": e.traceback_text,
                                    "output": e.output_tail}
    pss = TFCluster.run(spark, coordinate, None, 3, num_ps=1, master_node="chief")
    result["detached_pss"] = pss.shutdown(timeout=300)
    del os.environ["TFSPARK_CLIENT_HOST"]


def default_fs_of_the_session(spark) -> dict:
    """fs.defaultFS set on the Connect session: tfspark.fs resolves paths on it, as the TF
    cluster's backend does (no HDFS is contacted)."""
    import tfspark.fs as fs
    from tfspark._driver.spark_backend import backend_for
    spark.conf.set("spark.hadoop.fs.defaultFS", "hdfs://namenode.example:8020")
    try:
        return {"fs": fs.default_fs(), "backend": backend_for(spark).default_fs(),
                "resolved": fs.resolve("data/x", user="alice")}
    finally:
        spark.conf.unset("spark.hadoop.fs.defaultFS")


def main(work: str) -> None:
    spark = SparkSession.builder.remote(os.environ["SPARK_REMOTE"]).getOrCreate()
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

    result["predict"] = predict_under_connect(spark, work)

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
    pss = TFCluster.run(spark, coordinate, None, 3, num_ps=1, master_node="chief")
    result["pss"] = pss.shutdown(timeout=300)
    result["pss_history"] = pss.history
    result["default_fs"] = default_fs_of_the_session(spark)
    detached(spark, result)
    print("RESULT " + json.dumps(result), flush=True)
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1])
