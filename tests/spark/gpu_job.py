"""Driver for test_gpus.py: TF nodes on a standalone worker that offers 2 (fake) GPUs.

    python gpu_job.py MASTER_URL   -> prints one JSON line: RESULT {...}
"""
import json
import os
import sys
import time

from pyspark.sql import SparkSession

from tfspark import InputMode, PreflightError, TFCluster


def report(args, ctx):
    """What a node's process sees of its GPUs (before TensorFlow is imported)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    growth = os.environ.get("TF_FORCE_GPU_ALLOW_GROWTH")
    rows = 0
    if args == "feed":
        for x, y in ctx.get_data_feed().dataset(16, label="y").as_numpy_iterator():
            rows += len(y)
    return {"gpus": list(ctx.gpus), "visible": visible, "growth": growth, "rows": rows}


def session(master, **conf):
    builder = (SparkSession.builder.master(master).appName("tfspark-gpus")
               .config("spark.driver.host", "127.0.0.1").config("spark.ui.enabled", "false")
               .config("spark.executor.cores", "3").config("spark.executor.memory", "1g")
               .config("spark.executor.resource.gpu.amount", "2"))
    for key, value in conf.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def main(master):
    result = {}
    spark = session(master)
    # stage-level: only the TF cluster's stage asks for GPUs
    result["stage_level"] = TFCluster.run(spark, report, None, 2,
                                          resources={"gpu": 1}).shutdown(timeout=300)
    df = spark.range(0, 300, 1, 3).selectExpr("CAST(id AS double) AS x", "1.0D AS y")
    cluster = TFCluster.run(spark, report, "feed", 2, input_mode=InputMode.SPARK,
                            resources={"gpu": 1}, feed_mode="job")
    cluster.train(df)  # a feeding job with no GPU amount, beside the GPU stage
    result["fed"] = cluster.shutdown(timeout=300)
    started = time.monotonic()
    try:
        TFCluster.run(spark, report, None, 2, resources={"gpu": 3})
    except PreflightError as e:
        result["too_many"] = [str(e), time.monotonic() - started]
    spark.stop()

    # application-wide: every task takes one GPU (the set-up users reach for first)
    spark = session(master, **{"spark.task.resource.gpu.amount": "1"})
    result["app_wide"] = TFCluster.run(spark, report, None, 2).shutdown(timeout=300)
    spark.stop()
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
