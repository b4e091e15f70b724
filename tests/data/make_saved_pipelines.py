"""How ``tests/data/ml_saved_before_34/`` was made (once, by tfspark at 8155deb, before the
package moved its machinery into private subpackages): Spark ML persists each stage's class
path, so pipelines saved by an earlier release must keep loading (``tests/spark/test_ml.py``).

    .venv/bin/python tests/data/make_saved_pipelines.py tests/data/ml_saved_before_34

Writes ``model/`` (a SavedModel: y = x . [1, -2, 3, 0.5] + 1, input ``x`` float32[4]),
``pipeline_model/`` (VectorAssembler + a TFModel scoring with it) and ``pipeline/`` (an unfitted
VectorAssembler + TFEstimator whose train_fn is saved cloudpickled).
"""
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


def train_fn(args, ctx):
    """Saved by value (defined in __main__): what a user's notebook function looks like."""
    feed = ctx.get_data_feed()
    return {"batch_size": args.batch_size, "label": args.label, "feed": type(feed).__name__}


def main(out: str) -> None:
    import numpy as np
    import tensorflow as tf
    from pyspark.ml import Pipeline, PipelineModel
    from pyspark.ml.feature import VectorAssembler
    from pyspark.sql import SparkSession
    from tfspark.ml import TFEstimator, TFModel

    weights = np.array([[1.0], [-2.0], [3.0], [0.5]], "float32")
    inputs = tf.keras.Input((4,), name="x")
    dense = tf.keras.layers.Dense(1, name="y")
    model = tf.keras.Model(inputs, dense(inputs))
    dense.set_weights([weights, np.array([1.0], "float32")])
    model.save(os.path.join(out, "model"), save_format="tf")

    spark = SparkSession.builder.master("local[1]").getOrCreate()
    assembler = VectorAssembler(inputCols=["a", "b", "c", "d"], outputCol="features")
    scorer = TFModel(modelPath=os.path.join(out, "model"), inputMapping={"x": "features"},
                     outputMapping={"y": "prediction"}, batchSize=7)
    PipelineModel(stages=[assembler, scorer]).write().overwrite().save(
        os.path.join(out, "pipeline_model"))
    estimator = TFEstimator(train_fn, {"lr": 0.1}, featuresCol="features", labelCol="y",
                            clusterSize=2, epochs=3, batchSize=16,
                            exportDir="hdfs:///models/saved-before")
    Pipeline(stages=[assembler, estimator]).write().overwrite().save(
        os.path.join(out, "pipeline"))
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1])
