"""Driver for test_no_spare_slot.py, on a standalone cluster of 2 workers x 1 core.

    python no_spare_slot_job.py MASTER_URL WORK_DIR   -> prints one JSON line: RESULT {...}

TensorFlowOnSpark's standard set-up: as many task slots as TF nodes, none to spare for a
feeding job. Runs in its own process: the test session's SparkContext holds the other cluster.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from pyspark.sql import SparkSession  # noqa: E402

from test_ml import _frame, _train  # noqa: E402
from test_rows_trained import _fit_fed_rows, _id_frame  # noqa: E402
from tfspark import InputMode, PreflightError, TFCluster  # noqa: E402


def main(master: str, work: str) -> None:
    spark = (SparkSession.builder.master(master).appName("tfspark-no-spare-slot")
             .config("spark.executor.cores", "1").config("spark.executor.memory", "1g")
             .config("spark.driver.host", "127.0.0.1").config("spark.ui.enabled", "false")
             .getOrCreate())
    sc = spark.sparkContext
    result = {}

    df, rows, id_sum = _id_frame(spark, (301, 0, 150))
    cluster = TFCluster.run(sc, _fit_fed_rows, {"batch_size": 16}, 2,
                            input_mode=InputMode.SPARK)
    result["slots"] = cluster._backend.slots()
    cluster.train(df, num_epochs=2)
    for name, call in (("second_train", lambda: cluster.train(df)),
                       ("inference_after_train", lambda: cluster.inference(df))):
        try:
            call()
        except PreflightError as e:
            result[name] = str(e)
    result["trained"] = cluster.shutdown(timeout=300)
    result["expected"] = [[rows, id_sum]] * 2

    from pyspark.ml import Pipeline
    from pyspark.ml.feature import VectorAssembler
    from tfspark.ml import TFEstimator
    estimator = TFEstimator(_train, {"learning_rate": 0.05}, labelCol="label", clusterSize=2,
                            epochs=2, batchSize=16, exportDir=f"{work}/export",
                            validationFraction=0.25)
    pipeline = Pipeline(stages=[VectorAssembler(inputCols=["a", "b", "c", "d"],
                                                outputCol="features"), estimator])
    fitted = pipeline.fit(_frame(spark))
    result["history"] = fitted.stages[-1].history
    result["scored"] = fitted.transform(_frame(spark)).select("prediction").count()
    print("RESULT " + json.dumps(result), flush=True)
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
