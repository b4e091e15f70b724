"""What losing an executor for good costs MultiWorkerMirroredStrategy training with
``TFCluster.run(min_workers=1)``: the same Spark-fed job run unkilled, then with one Spark
worker daemon SIGKILLed (with its executor) mid-epoch 2, so the job goes on on 1 worker.

    .venv/bin/python benchmarks/elastic_recovery.py [--rows 20000] [--epochs 5] [--slot-wait 10]

Starts its own standalone cluster (2 workers x 1 core, loopback). Prints the time from the
kill to the first step on the worker left, and both runs' wall times and their ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def train(args, ctx):
    """A small regression on the fed rows, backed up every epoch; kills its Spark worker at
    ``args["kill_step"]`` on the first attempt."""
    import tensorflow as tf
    strategy = ctx.multi_worker_mirrored_strategy()
    feed = ctx.get_data_feed()
    dataset = feed.dataset(32, label="y")
    with strategy.scope():
        model = tf.keras.Sequential([tf.keras.Input((16,), name="x"),
                                     tf.keras.layers.Dense(64, activation="relu"),
                                     tf.keras.layers.Dense(1)])
        model.compile("adam", "mse")

    class Kill(tf.keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            step = int(model.optimizer.iterations.numpy())
            if ctx.attempt == 0 and ctx.worker_num == 1 and step == args["kill_step"]:
                from tfspark.testing.spark import kill_spark_worker_above
                with open(args["marks"] + ".killed", "w") as out:
                    out.write(str(time.time()))
                kill_spark_worker_above()
            if ctx.attempt == 1 and not os.path.exists(args["marks"] + ".resumed"):
                with open(args["marks"] + ".resumed", "w") as out:
                    out.write(str(time.time()))

    backup = ctx.backup_and_restore(f"file://{args['marks']}-backup")
    model.fit(dataset, epochs=feed.num_epochs, verbose=0, callbacks=[backup, Kill()])
    return ctx.num_workers


def driver(master: str, marks: str, rows: str, epochs: str, kill: str, slot_wait: str) -> int:
    from pyspark import cloudpickle
    from pyspark.sql import SparkSession
    from tfspark import InputMode, TFCluster
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    spark = (SparkSession.builder.master(master).appName("elastic-recovery")
             .config("spark.driver.host", "127.0.0.1").config("spark.ui.enabled", "false")
             .config("spark.executor.memory", "1g").getOrCreate())
    df = spark.range(int(rows), numPartitions=4).selectExpr(
        "transform(sequence(1, 16), i -> CAST(((id * i) % 97) / 97.0 AS float)) AS x",
        "CAST(id % 7 AS float) AS y")
    steps_per_epoch = int(rows) // 2 // 32
    started = time.time()
    cluster = TFCluster.run(spark.sparkContext, train,
                            {"marks": marks, "kill_step": steps_per_epoch + steps_per_epoch // 2
                             if kill == "1" else -1}, 2, input_mode=InputMode.SPARK,
                            min_workers=1, slot_wait=float(slot_wait), progress=False)
    cluster.train(df.cache(), num_epochs=int(epochs))
    workers = cluster.shutdown(timeout=1800)
    print("RESULT " + json.dumps({"secs": time.time() - started, "workers": workers,
                                  "attempts": [a.workers for a in cluster.attempts]}),
          flush=True)
    spark.stop()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--slot-wait", type=float, default=10.0)
    args = parser.parse_args()
    from tfspark.testing.spark import StandaloneCluster
    base = tempfile.mkdtemp(prefix="tfspark-elastic-")
    runs = {}
    with StandaloneCluster(os.path.join(base, "spark"), num_workers=2, cores_per_worker=1,
                           memory_per_worker="2g") as cluster:
        for name, kill in (("unkilled", "0"), ("killed", "1")):
            marks = os.path.join(base, name)
            done = subprocess.run([sys.executable, __file__, "--_driver", cluster.master_url,
                                   marks, str(args.rows), str(args.epochs), kill,
                                   str(args.slot_wait)], capture_output=True, text=True,
                                  timeout=3600, env=dict(os.environ,
                                                         PYSPARK_PYTHON=sys.executable))
            lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            if not lines:
                print(done.stdout[-2000:], done.stderr[-4000:])
                return 1
            runs[name] = json.loads(lines[0][len("RESULT "):])
            if kill == "1":
                runs[name]["recovery"] = (float(open(marks + ".resumed").read())
                                          - float(open(marks + ".killed").read()))
    killed, unkilled = runs["killed"], runs["unkilled"]
    print(f"{args.rows} rows, {args.epochs} epochs, 2 workers x 1 core, slot_wait "
          f"{args.slot_wait:g}s")
    print(f"  unkilled: {unkilled['secs']:.1f} s on {unkilled['attempts']} workers")
    print(f"  killed:   {killed['secs']:.1f} s on {killed['attempts']} workers")
    print(f"  from the kill to the first step on the worker left: {killed['recovery']:.1f} s")
    print(f"  killed / unkilled wall time: x{killed['secs'] / unkilled['secs']:.2f}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--_driver"]:
        sys.exit(driver(*sys.argv[2:8]))
    sys.exit(main())
