"""The MNIST example end to end: tfspark against TensorFlowOnSpark 2.2.5, both input modes.

    .venv/bin/pip install --no-deps tensorflowonspark==2.2.5     # the baseline, never a dependency
    .venv/bin/python benchmarks/mnist_e2e.py [--mnist ~/mnist.npz] [--epochs 5] [--batch-size 32]
        [--copies 1] [--parts tfspark-spark,tfspark-tf,tfos-spark,tfos-tf]

Data: ``examples/mnist/mnist_data_setup.py`` writes the train/test TFRecords once (real MNIST with
``--mnist``, else scikit-learn's digits upscaled to 28x28), on local disk, which every executor
of the one-machine cluster reads; ``--copies N`` trains on N copies of the training files (the
digits are 1,438 rows: at that size both frameworks' start-up is most of the time). Model:
the example's CNN (``mnist_spark.build_model``), 2 TF workers under MultiWorkerMirroredStrategy,
``--epochs`` epochs of ``--batch-size`` rows per worker per step. Cluster: one Spark standalone
cluster (``tfspark.testing.spark``, 2 workers x 2 cores on 127.0.0.1) for every part, one part
after the other, each in its own driver process.

- ``tfspark-spark``: ``tfrecord.read`` -> ``cluster.train(df, epochs)``; the nodes train on
  ``ctx.get_data_feed().dataset(batch_size, label="label")``, as the example does.
- ``tfspark-tf``: each node reads its shard with ``tfspark.data.tfrecord_dataset``, as the
  example does.
- ``tfos-spark``: as TFoS's ``examples/mnist/keras/mnist_spark.py``: ``cluster.train(rdd, epochs)``
  of (image, label) tuples; ``TFNode.DataFeed.next_batch`` wrapped in ``from_generator``;
  ``steps_per_epoch`` = 90% of rows / (batch x workers) (TFoS's own rule, since its feed cannot
  promise every worker the same number of rows). Two changes, both in TFoS's favour: whole
  batches per ``next_batch`` call (its example asks for one row at a time) and ``auto_shard``
  off (else each worker keeps every other batch of its own feed and runs dry).
  The same DataFrame (``tfrecord.read``) feeds it, as ``df.rdd``.
- ``tfos-tf``: as TFoS's ``examples/mnist/keras/mnist_tf_ds.py``: every worker lists the files,
  ``repeat(epochs)``, shuffles and reads them all (``auto_shard`` off), ``steps_per_epoch`` =
  rows / (batch x workers).

Equal work: MultiWorkerMirroredStrategy splits each batch of a dataset it does not shard over
the workers, so TFoS's datasets batch ``batch_size x workers`` rows (each worker then trains
``batch_size`` rows a step, as under tfspark, whose datasets are per-worker batches). Every
part counts, inside the train step (a metric summed over all replicas), the rows it trains on
per epoch; the ratios are of wall time per row trained, the raw wall times beside them.

TFoS's set-up is its own standard one: 1 core per executor (its node tasks return at once and
its feeding tasks run beside the TF process); tfspark's: 2 cores per executor (the feed needs a
slot besides the nodes').

Printed per part: wall time (the driver process, start to exit: JVM, executors, TensorFlow
import, training, shutdown), time to the first training step (the chief's first
``on_train_batch_begin``, from the driver process's start), and the test accuracy of the chief's
final weights (evaluated here, the same way for every part), the rows trained, wall time per row
trained and per epoch's worth of rows. Ratios: tfspark / TFoS wall time per row trained, per
input mode (goal <= 0.5 at equal or better accuracy).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(os.path.dirname(HERE), "examples", "mnist")
os.environ["PYSPARK_PYTHON"] = sys.executable
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["TF_USE_LEGACY_KERAS"] = "1"  # here, for evaluating; the nodes get it from Spark
MARK = "MNIST_E2E_RESULT "
PARTS = ("tfspark-spark", "tfspark-tf", "tfos-spark", "tfos-tf")


# ------------------------------------------------------------------ on the TF nodes
def _first_step_callback(tf, path: str):
    """Writes ``time.time()`` of the first training step to ``path`` (once)."""
    class FirstStep(tf.keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if not os.path.exists(path):
                with open(path, "w") as f:
                    f.write(repr(time.time()))
    return FirstStep()


def _rows_trained_metric(tf):
    """A metric that counts the rows the train step itself trains on, summed over every
    replica of the cluster when read: what each framework really trained, whatever its
    dataset, batching and strategy rebatching did."""
    class RowsTrained(tf.keras.metrics.Metric):
        def __init__(self):
            super().__init__(name="rows_trained")
            self.rows = self.add_weight("rows", initializer="zeros", dtype=tf.float64)

        def update_state(self, y_true, y_pred, sample_weight=None):
            self.rows.assign_add(tf.cast(tf.shape(y_true)[0], tf.float64))

        def result(self):
            return self.rows
    return RowsTrained()


def _fit(tf, strategy, args: dict, is_chief: bool, dataset, epochs: int, steps=None) -> None:
    """The example's CNN fitted on ``dataset``; the chief saves its final weights and the rows
    trained in each epoch."""
    import numpy as np
    from mnist_spark import build_model  # shipped with addPyFile
    with strategy.scope():
        model = build_model(tf)
        model.compile(optimizer=model.optimizer, loss=model.loss,
                      metrics=["accuracy", _rows_trained_metric(tf)])
    callbacks = [_first_step_callback(tf, args["first_step"])] if is_chief else []
    history = model.fit(dataset, epochs=epochs, steps_per_epoch=steps, callbacks=callbacks,
                        verbose=0)
    if is_chief:
        np.savez(args["weights"], *model.get_weights())
        with open(args["rows_trained"], "w") as f:
            json.dump(history.history["rows_trained"], f)


def _features(tf):
    return {"image": tf.io.FixedLenFeature([784], tf.float32),
            "label": tf.io.FixedLenFeature([], tf.int64)}


def tfspark_main(args: dict, ctx) -> None:
    import tensorflow as tf
    from tfspark import data
    strategy = tf.distribute.MultiWorkerMirroredStrategy()  # before any other TF call
    if args["mode"] == "spark":
        feed = ctx.get_data_feed()
        dataset, epochs = feed.dataset(args["batch_size"], label="label"), feed.num_epochs
    else:
        records = data.tfrecord_dataset(args["train"], _features(tf), ctx=ctx)
        dataset = (records.map(lambda r: (r["image"], r["label"])).shuffle(2048)
                   .batch(args["batch_size"]))
        epochs = args["epochs"]
    _fit(tf, strategy, args, ctx.is_chief, dataset, epochs)


def tfos_main(args: dict, ctx) -> None:
    import numpy as np
    import tensorflow as tf
    strategy = tf.distribute.MultiWorkerMirroredStrategy()  # before any other TF call
    workers = ctx.num_workers
    # MWMS splits each batch of a dataset it does not shard over the workers: batches of
    # batch_size x workers rows give every worker batch_size rows a step, as tfspark's do
    batch = args["batch_size"] * workers
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    if args["mode"] == "spark":
        from tensorflowonspark import TFNode
        feed = TFNode.DataFeed(ctx.mgr, False)

        def batches():
            while not feed.should_stop():
                rows = feed.next_batch(batch)
                if not rows:
                    return
                yield (np.asarray([r[0] for r in rows], np.float32),
                       np.asarray([r[1] for r in rows], np.int64))

        dataset = tf.data.Dataset.from_generator(batches, output_signature=(
            tf.TensorSpec((None, 784), tf.float32), tf.TensorSpec((None,), tf.int64)))
        steps = int(args["rows"] / batch * 0.9)
    else:
        files = tf.data.Dataset.list_files(os.path.join(args["train"], "part-*"))
        features = _features(tf)
        dataset = (files.repeat(args["epochs"]).shuffle(10000)
                   .interleave(tf.data.TFRecordDataset)
                   .map(lambda r: (lambda f: (f["image"], f["label"]))(
                       tf.io.parse_single_example(r, features)))
                   .batch(batch))
        steps = args["rows"] // batch
    _fit(tf, strategy, args, ctx.job_name == "chief", dataset.with_options(options),
         args["epochs"], steps)
    if args["mode"] == "spark":
        feed.terminate()


# ------------------------------------------------------------------ one part (a driver process)
def run_part(name: str, opts) -> dict:
    from pyspark.sql import SparkSession
    from tfspark import tfrecord
    framework, mode = name.split("-")
    cores = "2" if framework == "tfspark" else "1"
    spark = (SparkSession.builder.master(opts.master).appName(f"mnist-e2e-{name}")
             .config("spark.driver.host", "127.0.0.1").config("spark.ui.enabled", "false")
             .config("spark.executor.cores", cores).config("spark.cores.max", str(2 * int(cores)))
             .config("spark.executor.memory", "3g")
             .config("spark.executorEnv.TF_USE_LEGACY_KERAS", "1")  # TFoS does not set it
             .config("spark.executorEnv.TF_CPP_MIN_LOG_LEVEL", "2").getOrCreate())
    marks = {"session": time.time()}
    try:
        spark.sparkContext.addPyFile(os.path.join(EXAMPLE, "mnist_spark.py"))
        train = os.path.join(opts.workdir, "data", "train")
        df = tfrecord.read(spark, train).select("image", "label")
        args = {"mode": mode, "batch_size": opts.batch_size, "epochs": opts.epochs,
                "train": train, "rows": opts.train_rows,
                "first_step": os.path.join(opts.workdir, f"{name}.first_step"),
                "weights": os.path.join(opts.workdir, f"{name}.npz"),
                "rows_trained": os.path.join(opts.workdir, f"{name}.rows.json")}
        if framework == "tfspark":
            from tfspark import InputMode, TFCluster
            input_mode = InputMode.SPARK if mode == "spark" else InputMode.TENSORFLOW
            cluster = TFCluster.run(spark, tfspark_main, args, 2, input_mode=input_mode)
            marks["cluster"] = time.time()
            if mode == "spark":
                cluster.train(df, num_epochs=opts.epochs)
                marks["fed"] = time.time()
            cluster.shutdown(timeout=1800)
        else:
            from tensorflowonspark import TFCluster
            input_mode = (TFCluster.InputMode.SPARK if mode == "spark"
                          else TFCluster.InputMode.TENSORFLOW)
            cluster = TFCluster.run(spark.sparkContext, tfos_main, args, 2, num_ps=0,
                                    input_mode=input_mode, master_node="chief")
            marks["cluster"] = time.time()
            if mode == "spark":
                cluster.train(df.rdd.map(lambda r: (list(r.image), r.label)), opts.epochs)
                marks["fed"] = time.time()
            cluster.shutdown()
        marks["shut down"] = time.time()
    finally:
        spark.stop()
    with open(args["first_step"]) as f, open(args["rows_trained"]) as rows:
        return {"first_step_wall": float(f.read()), "marks": marks,
                "rows_trained": json.load(rows)}


# ------------------------------------------------------------------ parent
def _setup_data(opts) -> None:
    cmd = [sys.executable, os.path.join(EXAMPLE, "mnist_data_setup.py"),
           "--output", os.path.join(opts.workdir, "data")]
    if opts.mnist:
        cmd += ["--mnist", opts.mnist]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=opts.workdir)
    train = os.path.join(opts.workdir, "data", "train")
    parts = sorted(f for f in os.listdir(train) if f.startswith("part-"))
    # --copies: the training files again, renamed so that file i of copy c comes (i + c) % P-th
    # in path order: with 2 shards (files dealt i % 2) each worker reads equally many rows,
    # once copies is a multiple of P (uneven shards make MWMS take empty batches, on which TF
    # 2.21's oneDNN MaxPool gradient aborts: tensorflow/tensorflow#126128)
    for copy in range(1, opts.copies):
        for i, name in enumerate(parts):
            rank = (i + copy) % len(parts)
            shutil.copyfile(os.path.join(train, name),
                            os.path.join(train, f"part-c{copy:04d}-{rank}-{name[5:]}"))


def _test_set(tf, path: str):
    files = sorted(os.path.join(path, f) for f in os.listdir(path) if f.startswith("part-"))
    parsed = tf.data.TFRecordDataset(files).batch(100000).map(
        lambda r: tf.io.parse_example(r, _features(tf)))
    arrays = next(iter(parsed))
    return arrays["image"].numpy(), arrays["label"].numpy()


def _accuracy(weights_path: str, test) -> float:
    import numpy as np
    import tensorflow as tf
    sys.path.insert(0, EXAMPLE)
    from mnist_spark import build_model
    model = build_model(tf)
    with np.load(weights_path) as saved:
        model.set_weights([saved[f"arr_{i}"] for i in range(len(saved.files))])
    return float(model.evaluate(*test, verbose=0)[1])


def _count_rows(path: str) -> int:
    import tensorflow as tf
    files = [os.path.join(path, f) for f in os.listdir(path) if f.startswith("part-")]
    return sum(1 for _ in tf.data.TFRecordDataset(files))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", help="mnist.npz or the four IDX files' folder (default: digits)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--copies", type=int, default=1,
                        help="train on the training files this many times over (digits x 40: "
                             "57,520 rows, MNIST's size)")
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--_part", choices=PARTS, help=argparse.SUPPRESS)
    parser.add_argument("--master", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--train-rows", type=int, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts._part:
        print(MARK + json.dumps(run_part(opts._part, opts)), flush=True)
        return
    parts = [p for p in opts.parts.split(",") if p]
    if set(parts) - set(PARTS):
        raise SystemExit(f"--parts: unknown {sorted(set(parts) - set(PARTS))}")
    if any(p.startswith("tfos") for p in parts):
        try:
            import tensorflowonspark  # noqa: F401
        except ImportError:
            raise SystemExit("TensorFlowOnSpark is not installed: pip install --no-deps "
                             "tensorflowonspark==2.2.5 (or leave tfos-* out of --parts)")
    from tfspark.testing.spark import StandaloneCluster
    opts.workdir = tempfile.mkdtemp(prefix="mnist-e2e-")
    results = {}
    try:
        _setup_data(opts)
        opts.train_rows = _count_rows(os.path.join(opts.workdir, "data", "train"))
        with StandaloneCluster(os.path.join(opts.workdir, "spark"), num_workers=2,
                               cores_per_worker=2, memory_per_worker="3g") as cluster:
            for name in parts:
                print(f"--- {name}: starting ({time.strftime('%H:%M:%S')})", flush=True)
                cmd = [sys.executable, os.path.abspath(__file__), "--_part", name,
                       "--master", cluster.master_url, "--workdir", opts.workdir,
                       "--epochs", str(opts.epochs), "--batch-size", str(opts.batch_size),
                       "--train-rows", str(opts.train_rows)]
                started = time.time()
                proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True, cwd=opts.workdir)
                wall = time.time() - started
                found = [line[len(MARK):] for line in proc.stdout.splitlines()
                         if line.startswith(MARK)]
                if proc.returncode != 0 or not found:
                    print("\n".join(proc.stdout.splitlines()[-60:]))
                    raise SystemExit(f"part {name} failed (exit code {proc.returncode})")
                part = json.loads(found[-1])
                results[name] = {"wall": wall, "first_step": part["first_step_wall"] - started,
                                 "marks": {k: v - started for k, v in part["marks"].items()},
                                 "rows_trained": part["rows_trained"]}
                print(f"--- {name}: {wall:.1f} s", flush=True)
        test = _test_set(__import__("tensorflow"), os.path.join(opts.workdir, "data", "test"))
        for name in parts:
            results[name]["accuracy"] = _accuracy(os.path.join(opts.workdir, f"{name}.npz"), test)
    finally:
        shutil.rmtree(opts.workdir, ignore_errors=True)
    print(f"\n{opts.train_rows:,} training rows ({opts.copies} x the set), {len(test[1]):,} test "
          f"rows; {opts.epochs} epochs, batch {opts.batch_size} per worker, 2 workers")
    print(f"{'part':16s} {'wall s':>8s} {'first step s':>13s} {'test accuracy':>14s} "
          f"{'rows trained':>13s} {'us/row':>7s} {'s/epoch-eq':>10s}")
    for name in parts:
        r = results[name]
        r["rows"] = sum(r["rows_trained"])
        r["per_row"] = r["wall"] / r["rows"]
        r["per_epoch"] = r["wall"] * opts.train_rows / r["rows"]  # wall per train_rows trained
        print(f"{name:16s} {r['wall']:8.1f} {r['first_step']:13.1f} {r['accuracy']:14.4f} "
              f"{r['rows']:13,.0f} {r['per_row'] * 1e6:7.0f} {r['per_epoch']:10.1f}")
    print("rows trained: counted inside the train step, every replica, per epoch: " + "; ".join(
        f"{name} {[int(n) for n in results[name]['rows_trained']]}" for name in parts))
    print("\nseconds from the driver's start: Spark session ready, TFCluster.run returned, "
          "train() returned (Spark-fed), first training step, shutdown() returned")
    for name in parts:
        m = results[name]["marks"]
        print(f"  {name:16s} session {m['session']:5.1f}  cluster {m['cluster']:5.1f}  fed "
              f"{m['fed'] if 'fed' in m else float('nan'):5.1f}  first step "
              f"{results[name]['first_step']:5.1f}  shut down {m['shut down']:5.1f}")
    for mode in ("spark", "tf"):
        ours, theirs = results.get(f"tfspark-{mode}"), results.get(f"tfos-{mode}")
        if ours and theirs:
            print(f"input mode {mode}: tfspark / TFoS wall time per row trained "
                  f"{ours['per_row'] / theirs['per_row']:.2f} (goal <= 0.5), raw wall time "
                  f"{ours['wall'] / theirs['wall']:.2f}, first step "
                  f"{ours['first_step'] / theirs['first_step']:.2f}, rows trained "
                  f"{ours['rows']:,.0f} vs {theirs['rows']:,.0f}, accuracy "
                  f"{ours['accuracy']:.4f} vs {theirs['accuracy']:.4f}")


if __name__ == "__main__":
    main()
