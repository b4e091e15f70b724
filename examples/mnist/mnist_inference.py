"""MNIST example, step 3: score the test TFRecords with the latest exported SavedModel.

    python examples/mnist/mnist_inference.py --export_dir mnist_export \\
        --images_labels mnist_data/test --output mnist_predictions
    spark-submit --master spark://HOST:7077 examples/mnist/mnist_inference.py \\
        --export_dir hdfs:///models/mnist --images_labels hdfs:///data/mnist/test \\
        --output hdfs:///data/mnist/predictions

The driver finds the highest numbered version under ``--export_dir``
(:func:`tfspark.export.latest_version`), copies it to local disk if it is on HDFS, and ships it
to the executors zipped in a broadcast variable, so executors need no HDFS access for the model.
Each ``mapInPandas`` task loads the model once (tf-keras: ``TF_USE_LEGACY_KERAS=1`` is set
before TensorFlow is imported; TensorFlow's C++ start-up lines are kept out of the output with
:func:`tfspark.tf_chatter.quiet_start`) and predicts its partition.  Prints ``test accuracy: 0.xxxx``
and writes ``label, prediction`` rows to ``--output`` (parquet or csv, local or HDFS).
"""
import argparse
import io
import os
import shutil
import tempfile
import time

from pyspark.sql import functions as F

from tfspark import export, tfrecord
from tfspark.session import get_session, is_connect_session, master_of


def zip_dir(path: str) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        archive = shutil.make_archive(os.path.join(tmp, "model"), "zip", path)
        with open(archive, "rb") as f:
            return f.read()


class _InClosure:
    """Spark Connect has no broadcast variables: the bytes travel with the function."""

    def __init__(self, value: bytes):
        self.value = value


def shipped(spark, data: bytes):
    """``data`` for the executors, read as ``.value``: a broadcast variable where the session
    has a SparkContext, else inside the function's closure (Spark Connect)."""
    if is_connect_session(spark):
        return _InClosure(data)
    return spark.sparkContext.broadcast(data)


def make_predictor(model_zip):
    """A mapInPandas function: (label, image) batches -> (label, prediction) batches."""

    def predict(batches):
        os.environ["TF_USE_LEGACY_KERAS"] = "1"  # tf-keras, before TensorFlow is imported
        import zipfile

        import numpy as np
        import pandas as pd

        from tfspark.tf_chatter import quiet_start

        with tempfile.TemporaryDirectory(prefix="mnist-model-") as local:
            zipfile.ZipFile(io.BytesIO(model_zip.value)).extractall(local)
            with quiet_start():  # TensorFlow's C++ start-up lines stay out of the output
                import tensorflow as tf
                model = tf.keras.models.load_model(local, compile=False)  # once per partition
            for pdf in batches:
                if pdf.empty:
                    continue
                images = np.stack(pdf["image"].to_numpy()).astype("float32")
                scores = model.predict(images, batch_size=256, verbose=0)
                yield pd.DataFrame({"label": pdf["label"].astype("int64"),
                                    "prediction": scores.argmax(axis=1).astype("int64")})

    return predict




def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export_dir", default="mnist_export",
                        help="export directory of mnist_spark.py (its latest version is used)")
    parser.add_argument("--images_labels", default="mnist_data/test",
                        help="TFRecord directory of the test set")
    parser.add_argument("--output", default="mnist_predictions",
                        help="where the (label, prediction) rows go, local or HDFS")
    parser.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    parser.add_argument("--master", default=None,
                        help="Spark master when not run by spark-submit (default: local[2])")
    parser.add_argument("--remote", default=None,
                        help="a Spark Connect server (sc://HOST:15002) to run on instead")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    started = time.time()
    version = export.latest_version(args.export_dir)
    print(f"model: {version}")
    local = export.local_copy(version)
    try:
        model_zip = zip_dir(local)
    finally:
        if export.is_remote(version):
            shutil.rmtree(os.path.dirname(local), ignore_errors=True)

    spark = get_session("tfspark-mnist-inference", args.master,
                        conf={"spark.executorEnv.TF_USE_LEGACY_KERAS": "1"}, remote=args.remote)
    print(f"master: {master_of(spark)}", flush=True)
    try:
        predictions = (tfrecord.read(spark, args.images_labels).select("label", "image")
                       .mapInPandas(make_predictor(shipped(spark, model_zip)),
                                    "label long, prediction long")
                       .cache())
        total, correct = predictions.agg(
            F.count("*"), F.sum((F.col("label") == F.col("prediction")).cast("long"))).first()
        writer = predictions.write.mode("overwrite")
        if args.format == "csv":
            writer.option("header", True).csv(args.output)
        else:
            writer.parquet(args.output)
        print(f"{total} test images, {correct} correct")
        print(f"test accuracy: {correct / total:.4f}")
        print(f"predictions written to {args.output} ({args.format})")
        print(f"total wall time {time.time() - started:.1f}s")
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
