"""tfspark.ml: TFEstimator/TFModel in a Spark ML Pipeline, saved to HDFS and loaded elsewhere."""
from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np
import pytest
from pyspark import cloudpickle

from tfspark import TFSparkError, export
from tfspark.ml import TFEstimator, TFMLError, TFModel

cloudpickle.register_pickle_by_value(sys.modules[__name__])

ROWS = 200


def _train(args, ctx):
    import tensorflow as tf

    from tfspark import export as tf_export
    feed = ctx.get_data_feed()
    data = feed.dataset(args.batch_size, label=args.label)
    validation = (feed.validation_dataset(args.batch_size, label=args.label)
                  if args.has_validation else None)
    # the README's order: data first, then the strategy (tfspark readies TF's collective ops
    # before the dataset's first op, which TF requires of MultiWorkerMirroredStrategy)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        model = tf.keras.Sequential([tf.keras.Input((4,), name="features"),
                                     tf.keras.layers.Dense(1, name="prediction")])
        model.compile(optimizer=tf.keras.optimizers.SGD(args.learning_rate), loss="mse")
    history = model.fit(data, validation_data=validation, epochs=args.epochs, verbose=0)
    tf_export.export_saved_model(model, args.export_dir, ctx)
    return history.history


def _frame(spark):
    rows = [(i, *(float((i * k) % 11) / 10 for k in (1, 3, 5, 7))) for i in range(ROWS)]
    df = spark.createDataFrame(rows, "id long, a double, b double, c double, d double")
    return df.selectExpr("*", "a - 2 * b + c + 0.5 * d AS label", "id % 5 = 0 AS is_val")


_LOAD_ELSEWHERE = textwrap.dedent("""
    import json, sys
    from pyspark.ml import PipelineModel
    from pyspark.sql import SparkSession
    spark = SparkSession.builder.master("local[2]").appName("load-elsewhere").getOrCreate()
    rows = [(i, *(float((i * k) % 11) / 10 for k in (1, 3, 5, 7))) for i in range(int(sys.argv[2]))]
    df = spark.createDataFrame(rows, "id long, a double, b double, c double, d double")
    scored = PipelineModel.load(sys.argv[1]).transform(df).select("id", "prediction").collect()
    print("SCORES " + json.dumps({r.id: r.prediction[0] for r in scored}), flush=True)
    spark.stop()
""")


def test_pipeline_fits_on_the_cluster_scores_like_the_model_and_loads_in_another_app(
        spark, hdfs_cluster, hadoop_env, tmp_path):
    from pyspark.ml import Pipeline, PipelineModel
    from pyspark.ml.feature import VectorAssembler

    base = f"{hdfs_cluster.default_fs}/user/{os.environ.get('USER') or 'tfspark'}/ml-{os.getpid()}"
    estimator = TFEstimator(_train, {"learning_rate": 0.05}, labelCol="label", clusterSize=2,
                            epochs=3, batchSize=16, exportDir=f"{base}/export",
                            validationCol="is_val")
    pipeline = Pipeline(stages=[VectorAssembler(inputCols=["a", "b", "c", "d"],
                                                outputCol="features"), estimator])
    df = _frame(spark)
    downloads = os.path.join(tempfile.gettempdir(), "tfspark-model-*")
    downloaded_before = set(glob.glob(downloads))
    fitted = pipeline.fit(df)
    model = fitted.stages[-1]
    assert isinstance(model, TFModel)
    assert model.getOrDefault(model.modelPath) == model.getModelPath() == f"{base}/export/1"
    assert [h["epoch"] for h in model.history] == [1, 2, 3]
    assert all("val_loss" in h for h in model.history)  # validationCol held rows out

    scored = {r.id: r.prediction[0] for r in
              fitted.transform(df).select("id", "prediction").collect()}
    import tensorflow as tf
    call = tf.saved_model.load(export.local_copy(f"{base}/export/1", str(tmp_path))).signatures[
        "serving_default"]
    features = np.array([[(i * k) % 11 / 10 for k in (1, 3, 5, 7)] for i in range(ROWS)],
                        "float32")
    expected = call(features=features)["prediction"].numpy()[:, 0]
    np.testing.assert_allclose([scored[i] for i in range(ROWS)], expected, rtol=1e-5,
                               atol=1e-6)

    fitted.write().overwrite().save(f"{base}/pipeline")
    assert isinstance(PipelineModel.load(f"{base}/pipeline").stages[-1], TFModel)
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, SPARK_LOCAL_IP="127.0.0.1")
    done = subprocess.run([sys.executable, "-c", _LOAD_ELSEWHERE, f"{base}/pipeline",
                           str(ROWS)], env=env, capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    lines = [line for line in done.stdout.splitlines() if line.startswith("SCORES ")]
    assert done.returncode == 0 and lines, done.stdout[-2000:] + done.stderr[-4000:]
    elsewhere = {int(k): v for k, v in json.loads(lines[0][len("SCORES "):]).items()}
    np.testing.assert_allclose([elsewhere[i] for i in range(ROWS)], expected, rtol=1e-5,
                               atol=1e-6)
    # the Python workers scored from HDFS: their downloaded copies are gone once loaded
    assert not set(glob.glob(downloads)) - downloaded_before


def test_estimator_settings_are_checked_before_any_node_starts(spark, tmp_path):
    df = _frame(spark)
    with pytest.raises(TFMLError, match="needs exportDir"):
        TFEstimator(_train, {}).fit(df)
    with pytest.raises(TFMLError, match=r"no column\(s\) \['features'\]"):
        TFEstimator(_train, {}, exportDir=str(tmp_path)).fit(df)
    with pytest.raises(TFSparkError, match="column 'due' has type decimal.*cast it to double"):
        TFEstimator(_train, {}, featuresCol=["a", "due"], exportDir=str(tmp_path)).fit(
            df.selectExpr("*", "CAST(a AS decimal(10, 2)) AS due"))
    with pytest.raises(TFMLError, match="validationCol or validationFraction, not both"):
        TFEstimator(_train, {}, featuresCol=["a", "b"], exportDir=str(tmp_path),
                    validationCol="is_val", validationFraction=0.2).fit(df)
    jobs_before = spark.sparkContext.statusTracker().getJobIdsForGroup(None)
    for setting, message in (
            ({"batchSize": -5}, "TFEstimator batchSize must be an int >= 1, got -5"),
            ({"epochs": -1}, "TFEstimator epochs must be an int >= 1, got -1"),
            ({"clusterSize": 0}, "TFEstimator clusterSize must be an int >= 1, got 0"),
            ({"numPS": 2}, "TFEstimator numPS=2 leaves no worker in clusterSize=2"),
            ({"minWorkers": 3}, "TFEstimator minWorkers must be None or an int from 1 to the 2 "
                                "training nodes"),
            ({"validationFraction": 1.5}, "TFEstimator validationFraction must be a number "
                                          "between 0 and 1")):
        started = time.monotonic()
        with pytest.raises(TFMLError) as caught:
            TFEstimator(_train, {}, featuresCol=["a", "b"], exportDir=str(tmp_path),
                        **setting).fit(df)
        assert str(caught.value).startswith(message)
        assert time.monotonic() - started < 1.0
    # refused on the driver: no Spark job ran for any of them
    assert spark.sparkContext.statusTracker().getJobIdsForGroup(None) == jobs_before


SAVED_BEFORE = os.path.join(os.path.dirname(__file__), "..", "data", "ml_saved_before_34")


def test_pipelines_saved_by_an_earlier_release_still_load_and_score(spark, tmp_path):
    """Spark ML persists class paths: a PipelineModel and a Pipeline saved before tfspark moved
    its machinery into private subpackages (tests/data/make_saved_pipelines.py) load, the
    model scores, and the estimator keeps its settings and train_fn."""
    import shutil
    from pyspark.ml import Pipeline, PipelineModel
    saved = str(tmp_path / "saved")
    shutil.copytree(SAVED_BEFORE, saved)
    fitted = PipelineModel.load(os.path.join(saved, "pipeline_model"))
    scorer = fitted.stages[-1]
    assert isinstance(scorer, TFModel) and scorer.getBatchSize() == 7
    scorer.setModelPath(os.path.join(saved, "model"))  # the SavedModel, where it is now
    rows = [(float(i), 1.0, -0.5, 2.0) for i in range(20)]
    scored = fitted.transform(spark.createDataFrame(rows, "a double, b double, c double, "
                                                          "d double")).collect()
    for row in scored:
        expected = row.a * 1.0 + row.b * -2.0 + row.c * 3.0 + row.d * 0.5 + 1.0
        assert row.prediction[0] == pytest.approx(expected, rel=1e-5)
    estimator = Pipeline.load(os.path.join(saved, "pipeline")).getStages()[-1]
    assert isinstance(estimator, TFEstimator)
    assert (estimator.getOrDefault("clusterSize"), estimator.getOrDefault("epochs"),
            estimator.getBatchSize(), estimator.getOrDefault("labelCol")) == (2, 3, 16, "y")
    train_fn, args = estimator._train_fn()
    assert callable(train_fn) and args == {"lr": 0.1}
