"""Rows/s scoring a DataFrame with a SavedModel: tfspark.predict vs two baselines, one run.

    .venv/bin/python benchmarks/predict_throughput.py                 # 200,000 rows
    .venv/bin/python benchmarks/predict_throughput.py --rows 50000    # quick

(a) single process: the SavedModel's signature called on the same rows in batches of
    ``--batch_size``, in this process, with TensorFlow held to one thread: the per-core rate.
(b) pandas UDF, a model load per batch: the naive UDF (``mapInPandas``) that loads the model for
    every Arrow batch it gets -- what hand-written scoring often does.
(c) tfspark.predict: the same DataFrame, model loaded once per Python worker.
(d) a no-op Arrow UDF over the same column: Spark's own cost of handing rows to Python, the
    ceiling of any Python scoring.

Spark runs ``local[--cores]``; (b) and (c) write to the ``noop`` sink after the input is cached
and counted, so only scoring is timed. Printed: rows/s of each, (c) per core / (a) (goal >= 0.8),
and (c) / (b).
"""
import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

_SAVE = textwrap.dedent("""
    import os, sys
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import tensorflow as tf
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([
        tf.keras.Input((784,), name="image"),
        tf.keras.layers.Reshape((28, 28, 1)),
        tf.keras.layers.Conv2D(int(sys.argv[2]), 3, activation="relu"),
        tf.keras.layers.MaxPooling2D(),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(64, activation="relu"),
        tf.keras.layers.Dense(10, activation="softmax", name="probs"),
    ])
    model.save(os.path.join(sys.argv[1], "1"), save_format="tf")
""")


def single_process(model_dir: str, rows: int, batch_size: int) -> float:
    """Rows/s of the signature in this process, one TF thread."""
    import numpy as np
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    call = tf.saved_model.load(model_dir).signatures["serving_default"]
    images = np.random.default_rng(0).random((rows, 784), dtype=np.float32)
    call(image=images[:batch_size])  # warm up (tracing)
    started = time.perf_counter()
    for start in range(0, rows, batch_size):
        call(image=images[start:start + batch_size])["probs"].numpy()
    return rows / (time.perf_counter() - started)


def load_per_batch(model_dir: str):
    def predict(batches):
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
        import numpy as np
        import pandas as pd
        import tensorflow as tf
        for pdf in batches:
            call = tf.saved_model.load(model_dir).signatures["serving_default"]
            images = np.stack(pdf["image"].to_numpy()).astype("float32")
            probs = call(image=images)["probs"].numpy()
            yield pd.DataFrame({"id": pdf["id"], "prediction": probs.argmax(axis=1)})
    return predict


def data_path(batch):
    """A no-op Arrow UDF over the same column: what Spark's Python data path alone allows."""
    import pyarrow as pa
    batch.flatten().to_numpy(zero_copy_only=False)
    return pa.array([0.0] * len(batch), pa.float32())


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch_size", type=int, default=1024)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--filters", type=int, default=16,
                        help="conv filters of the model: more makes scoring compute-bound")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tfspark-predict-bench-") as work:
        measure(args, work)


def measure(args, work: str) -> None:
    """Save the model in ``work``, then time (a)-(d) and print the ratios."""
    subprocess.run([sys.executable, "-c", _SAVE, work, str(args.filters)], check=True)
    model_dir = os.path.join(work, "1")
    print(f"load: {os.getloadavg()}", flush=True)

    single = single_process(model_dir, min(args.rows, 50_000), args.batch_size)
    print(f"(a) single process, 1 thread: {single:,.0f} rows/s", flush=True)

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    import tfspark
    spark = (SparkSession.builder.master(f"local[{args.cores}]")
             .config("spark.ui.showConsoleProgress", "false")
             .config("spark.executorEnv.TF_CPP_MIN_LOG_LEVEL", "2").getOrCreate())
    df = (spark.range(0, args.rows, 1, args.cores * 4)
          .withColumn("image", F.expr("transform(sequence(1, 784), i -> CAST(((id * 31 + i * 17) % 97) / 97.0 AS FLOAT))"))
          .cache())
    df.count()

    naive_rows = max(args.batch_size * args.cores * 2, args.rows // 20)  # it is slow
    naive = naive_rows / timed(lambda: df.limit(naive_rows).mapInPandas(
        load_per_batch(model_dir), "id long, prediction long").write.format("noop")
        .mode("overwrite").save())
    print(f"(b) pandas UDF, model loaded per batch: {naive:,.0f} rows/s "
          f"({naive_rows} rows)", flush=True)

    from pyspark.sql.functions import ArrowUDFType, arrow_udf
    noop = df.select("id", arrow_udf(data_path, "float", ArrowUDFType.SCALAR)("image"))
    noop.write.format("noop").mode("overwrite").save()
    ceiling = args.rows / timed(lambda: noop.write.format("noop").mode("overwrite").save())
    print(f"(d) no-op Arrow UDF (Spark's data path alone): {ceiling:,.0f} rows/s "
          f"({ceiling / args.cores:,.0f} per core)", flush=True)

    scored = tfspark.predict(df, model_dir, batch_size=args.batch_size).select("id", "probs")
    scored.write.format("noop").mode("overwrite").save()  # loads the model in each worker
    rate = args.rows / timed(lambda: scored.write.format("noop").mode("overwrite").save())
    print(f"(c) tfspark.predict: {rate:,.0f} rows/s on {args.cores} cores "
          f"({rate / args.cores:,.0f} per core)", flush=True)
    print(f"load: {os.getloadavg()}")
    print(f"tfspark.predict per core / single process per core: {rate / args.cores / single:.2f}"
          f" (goal >= 0.8)")
    print(f"tfspark.predict / per-batch loading UDF: {rate / naive:.1f}x")
    bound = 1 / (1 / single + args.cores / ceiling)  # per core, model and data path in turn
    print(f"tfspark.predict per core / (model + data path in turn, per core): "
          f"{rate / args.cores / bound:.2f}")
    spark.stop()


if __name__ == "__main__":
    main()
