"""What losing a worker's executor for good costs ParameterServerStrategy training: the same
job (ps, chief, 2 workers) run unkilled, then with worker:1's Spark worker daemon SIGKILLed with
its executor at the start of epoch 2 and no replacement, so the chief trains on with worker:0.

    .venv/bin/python benchmarks/pss_worker_loss.py [--epochs 6] [--steps 600]

Starts its own standalone cluster (4 workers x 1 core, loopback). Prints each run's fit time,
how much longer the epoch of the kill took than the same epoch unkilled (the coordinator finding
the worker gone and re-running its steps), the epochs after it against the same epochs
unkilled, and the killed / unkilled wall-time ratio.
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

KILL_EPOCH = 1  # 0-based: the kill is asked for as epoch 2 begins


def train(args, ctx):
    """A 16-64-1 dense regression on generated rows; records when each epoch ends."""
    import tensorflow as tf
    strategy = ctx.parameter_server_strategy()

    def dataset_fn(input_context):
        def row(i):
            x = tf.random.stateless_uniform((16,), seed=tf.stack([i, 1]))
            return x, tf.reduce_sum(x[:4]) + 0.1 * tf.random.stateless_normal((), seed=[i, 2])
        return tf.data.Dataset.counter().map(row).batch(32)

    with strategy.scope():
        model = tf.keras.Sequential([tf.keras.Input((16,)),
                                     tf.keras.layers.Dense(64, activation="relu"),
                                     tf.keras.layers.Dense(1)])
        model.compile("adam", "mse")
    ends = []

    class Marks(tf.keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 0:
                ends.append(time.time())
            if args["kill"] and epoch == KILL_EPOCH:
                from tfspark.testing.spark import request_kill
                request_kill(args["work"], "worker", 1)
                ends.append(("kill", time.time()))

        def on_epoch_end(self, epoch, logs=None):
            ends.append(time.time())

    model.fit(tf.keras.utils.experimental.DatasetCreator(dataset_fn), epochs=args["epochs"],
              steps_per_epoch=args["steps"], verbose=0, callbacks=[Marks()])
    return ends


def driver(master: str, work: str, epochs: str, steps: str, kill: str) -> int:
    from pyspark import cloudpickle
    from pyspark.sql import SparkSession
    from tfspark import TFCluster
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    spark = (SparkSession.builder.master(master).appName("pss-worker-loss")
             .config("spark.driver.host", "127.0.0.1").config("spark.ui.enabled", "false")
             .config("spark.executor.memory", "1g").getOrCreate())
    started = time.time()
    cluster = TFCluster.run(spark.sparkContext, train,
                            {"work": work, "epochs": int(epochs), "steps": int(steps),
                             "kill": kill == "1"}, 4, num_ps=1, master_node="chief",
                            progress=False)
    ends = cluster.shutdown(timeout=1800)[1]
    print("RESULT " + json.dumps({"secs": time.time() - started, "ends": ends,
                                  "lost": list(cluster.attempts[-1].lost),
                                  "attempts": len(cluster.attempts)}), flush=True)
    spark.stop()
    return 0


def epoch_secs(ends: list) -> list:
    times = [t for t in ends if not isinstance(t, list)]
    return [b - a for a, b in zip(times, times[1:])]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--steps", type=int, default=600)
    args = parser.parse_args()
    from tfspark.testing.spark import NodeKiller, StandaloneCluster, kill_spark_worker_above
    base = tempfile.mkdtemp(prefix="tfspark-pss-loss-")
    runs = {}
    with StandaloneCluster(os.path.join(base, "spark"), num_workers=4, cores_per_worker=1,
                           memory_per_worker="1g") as cluster, \
            NodeKiller(base, kill_spark_worker_above) as killer:
        for name, kill in (("unkilled", "0"), ("killed", "1")):
            done = subprocess.run([sys.executable, __file__, "--_driver", cluster.master_url,
                                   base, str(args.epochs), str(args.steps), kill],
                                  capture_output=True, text=True, timeout=3600,
                                  env=dict(os.environ, PYSPARK_PYTHON=sys.executable))
            lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            if not lines or killer.errors:
                print(killer.errors, done.stdout[-2000:], done.stderr[-4000:])
                return 1
            runs[name] = json.loads(lines[0][len("RESULT "):])
    unkilled, killed = runs["unkilled"], runs["killed"]
    if killed["attempts"] != 1 or killed["lost"] != ["worker:1"]:
        print(f"expected one attempt that lost worker:1, got {killed}")
        return 1
    plain, cut = epoch_secs(unkilled["ends"]), epoch_secs(killed["ends"])
    after = slice(KILL_EPOCH + 1, None)
    print(f"ParameterServerStrategy, ps + chief + 2 workers (4 workers x 1 core), "
          f"{args.epochs} epochs x {args.steps} steps of 32 rows")
    print(f"  unkilled: fit {sum(plain):.1f} s, job {unkilled['secs']:.1f} s")
    print(f"  worker:1 lost for good at epoch {KILL_EPOCH + 1}: fit {sum(cut):.1f} s, "
          f"job {killed['secs']:.1f} s, no cluster restart")
    print(f"  epoch {KILL_EPOCH + 1} (the kill): {cut[KILL_EPOCH]:.1f} s vs "
          f"{plain[KILL_EPOCH]:.1f} s unkilled (+{cut[KILL_EPOCH] - plain[KILL_EPOCH]:.1f} s)")
    print(f"  epochs after it on 1 worker: {sum(cut[after]):.1f} s vs {sum(plain[after]):.1f} s "
          f"on 2 (x{sum(cut[after]) / sum(plain[after]):.2f})")
    print(f"  killed / unkilled job wall time: x{killed['secs'] / unkilled['secs']:.2f}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--_driver"]:
        sys.exit(driver(*sys.argv[2:7]))
    sys.exit(main())
