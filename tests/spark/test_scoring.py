"""tfspark.predict: a DataFrame scored with a SavedModel, no TF cluster (real standalone Spark)."""
from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tfspark import predict
from tfspark.scoring import PredictError, read_signature

ROWS = 40

_SAVE_MODEL = textwrap.dedent("""
    import os, sys
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf
    export_dir, rows = sys.argv[1], int(sys.argv[2])
    tf.keras.utils.set_random_seed(3)
    x = tf.keras.Input((4,), name="x")
    hidden = tf.keras.layers.Dense(8, activation="relu")(x)
    probs = tf.keras.layers.Dense(3, activation="softmax", name="probs")(hidden)
    score = tf.keras.layers.Dense(1, name="score")(hidden)
    scalar = tf.keras.layers.Reshape((), name="scalar")(score)  # the README's scalar recipe
    model = tf.keras.Model(x, {"probs": probs, "score": score, "scalar": scalar})
    model.save(os.path.join(export_dir, "1"), save_format="tf")
    features = np.arange(rows * 4, dtype="float32").reshape(rows, 4) / 10.0
    out = model.predict(features, verbose=0)
    np.save(os.path.join(export_dir, "expected_probs.npy"), out["probs"])
    np.save(os.path.join(export_dir, "expected_score.npy"), out["score"])
""")


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    """A Keras model exported as version 1, and its local model.predict on the test rows."""
    folder = tmp_path_factory.mktemp("export")
    subprocess.run([sys.executable, "-c", _SAVE_MODEL, str(folder), str(ROWS)], check=True,
                   timeout=300)
    return str(folder)


def _features_df(spark, partitions=6):
    from pyspark.ml.feature import VectorAssembler
    rows = [(i, *[float(i * 4 + j) / 10.0 for j in range(4)]) for i in range(ROWS)]
    df = spark.createDataFrame(rows, "id long, a double, b double, c double, d double")
    df = df.repartition(partitions - 1, "id").union(df.limit(0))  # one partition is empty
    return VectorAssembler(inputCols=["a", "b", "c", "d"], outputCol="features").transform(df)


def _loads_in_executor_logs(standalone_cluster, app_id, model_dir):
    """The Python worker processes that loaded a version of ``model_dir`` (other tests of the
    session's application load models of their own)."""
    loads = []
    for path in glob.glob(os.path.join(standalone_cluster.base_dir, "worker-*", app_id, "*",
                                       "stderr")):
        with open(path, errors="replace") as f:
            loads += re.findall(rf"tfspark: loaded SavedModel {re.escape(model_dir)}/\d+ .* "
                                r"in process (\d+)", f.read())
    return loads


def test_predict_matches_local_model_predict_and_loads_once_per_python_worker(
        spark, standalone_cluster, export_dir):
    signature = read_signature(f"{export_dir}/1")
    assert [s.name for s in signature.inputs] == ["x"]
    assert {s.name: s.shape for s in signature.outputs} == {"probs": (None, 3),
                                                            "score": (None, 1),
                                                            "scalar": (None,)}
    df = _features_df(spark)
    scored = predict(df, export_dir, inputs={"x": "features"}, batch_size=7)  # latest version
    assert sorted(scored.columns) == sorted(df.columns + ["probs", "score", "scalar"])
    types = dict(scored.dtypes)
    assert (types["score"], types["scalar"]) == ("array<float>", "float")
    rows = sorted(scored.collect(), key=lambda r: r.id)
    assert [r.id for r in rows] == list(range(ROWS))
    assert rows[3].features.toArray().tolist() == [1.2, 1.3, 1.4, 1.5]  # vectors pass through
    np.testing.assert_allclose([r.probs for r in rows],
                               np.load(f"{export_dir}/expected_probs.npy"), atol=1e-5)
    np.testing.assert_allclose([r.score for r in rows],
                               np.load(f"{export_dir}/expected_score.npy"), atol=1e-5)
    np.testing.assert_allclose([r.scalar for r in rows],
                               np.load(f"{export_dir}/expected_score.npy")[:, 0], atol=1e-5)

    # A second scoring job in the same application reuses the workers' loaded models.
    renamed = predict(df, export_dir, inputs={"x": "features"}, outputs={"probs": "p"})
    assert renamed.columns == df.columns + ["p"] and renamed.count() == ROWS
    loads = _loads_in_executor_logs(standalone_cluster, spark.sparkContext.applicationId,
                                    str(export_dir))
    assert loads and len(loads) == len(set(loads)), loads  # once per Python worker process
    assert len(loads) < 2 * 6, loads  # fewer loads than the tasks that scored


def test_bad_input_is_named_before_or_while_scoring(spark, export_dir):
    from pyspark.sql import functions as F
    df = _features_df(spark, partitions=2)
    with pytest.raises(PredictError, match=r"input 'x' .* reads column 'x', which the "
                                           r"DataFrame does not have"):
        predict(df, export_dir)
    with pytest.raises(PredictError, match=r"column 'name' has type string, which the model's "
                                           r"input 'x'"):
        predict(df.withColumn("name", F.lit("n")), export_dir, inputs={"x": "name"})
    with pytest.raises(PredictError, match="no signature 'nope'"):
        predict(df, export_dir, signature="nope", inputs={"x": "features"})
    with pytest.raises(PredictError, match=r"output column\(s\) \['a'\] already exist"):
        predict(df, export_dir, inputs={"x": "features"}, outputs={"probs": "a"})



@pytest.mark.parametrize("problem", ["short", "null"])
def test_a_row_that_cannot_be_scored_raises_predict_error_from_the_action_at_once(
        spark, export_dir, problem):
    """Found only when the row is read, inside a task: the action raises tfspark's own error
    (also a PySparkException), tfspark's message first, on the task's first failure (Spark
    would retry it spark.task.maxFailures = 4 times)."""
    from pyspark.errors import PySparkException
    from pyspark.sql import functions as F
    from tfspark import TFSparkError
    df = _features_df(spark, partitions=2)
    if problem == "short":
        df, expected = (df.withColumn("bad", F.array("a", "b", "c")),
                        "column 'bad' has rows of shape [3], but the model's input 'x' takes")
    else:
        df, expected = (df.withColumn("bad", F.when(F.col("id") == 7, None).otherwise(
            F.array("a", "b", "c", "d"))), "column 'bad' has null values")
    scored = predict(df, export_dir, inputs={"x": "bad"})
    sc, group = spark.sparkContext, f"bad-rows-{problem}"
    sc.setJobGroup(group, "scoring rows that cannot be scored")
    try:
        with pytest.raises(PredictError) as caught:
            scored.collect()
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
    assert str(caught.value).startswith(expected)
    assert isinstance(caught.value, TFSparkError) and isinstance(caught.value, PySparkException)
    assert isinstance(caught.value.spark_error, PySparkException)
    tracker = sc.statusTracker()
    stages = [stage for job in tracker.getJobIdsForGroup(group)
              for stage in tracker.getJobInfo(job).stageIds]
    failed = sum(tracker.getStageInfo(stage).numFailedTasks for stage in stages)
    # the stage was cancelled before the task's failure reached the scheduler (the failed
    # task is then counted as killed), or just after; a retried task would fail 4 times
    assert failed <= 2
