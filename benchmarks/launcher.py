"""What starting and stopping a TF cluster costs: TFCluster.run + shutdown of a main_fun that
does nothing, against a plain barrier job doing the same rendezvous.

    .venv/bin/python benchmarks/launcher.py [--repeats 5] [--nodes 2]

On one Spark standalone cluster started with ``tfspark.testing.spark.StandaloneCluster`` (2
workers x 2 cores on 127.0.0.1; one application, 2 executors x 2 cores), after one warm-up run
of each (Python workers started, modules imported):

(a) barrier job: ``sc.parallelize(range(n), n).barrier().mapPartitions(f).collect()`` where
    ``f`` does one ``allGather`` of a host:port string (what a TF node's task does first);
(b) tfspark, no-op: ``TFCluster.run(sc, main_fun, None, n)`` + ``cluster.shutdown()`` with
    ``main_fun`` returning None at once (a fresh Python process per node, as always), with the
    node's background import of TensorFlow turned off (``TFSPARK_PRELOAD_TENSORFLOW=0``) and on
    (the default);
(c) tfspark, TF: the same with a ``main_fun`` that imports TensorFlow and returns a tensor's
    value: what a real job pays before its first line of TF runs, preload off and on.

Printed: the median and best wall time of each over ``--repeats`` runs and their ratio to (a).
Goals (issue 14): (b) <= 1.0 s; (c) with preload shorter than without (the import overlaps the
rendezvous instead of following it).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ["PYSPARK_PYTHON"] = sys.executable
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def noop(args, ctx):
    return None


def with_tensorflow(args, ctx):
    import tensorflow as tf
    return float(tf.constant(1.0))


def rendezvous(_):
    from pyspark import BarrierTaskContext
    task = BarrierTaskContext.get()
    yield task.allGather(f"127.0.0.1:{task.partitionId()}")


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--nodes", type=int, default=2)
    args = parser.parse_args()

    from pyspark.sql import SparkSession
    from tfspark import TFCluster
    from tfspark.testing.spark import StandaloneCluster

    with tempfile.TemporaryDirectory() as tmp, \
            StandaloneCluster(tmp, num_workers=2, cores_per_worker=2) as standalone:
        spark = (SparkSession.builder.master(standalone.master_url)
                 .config("spark.executor.cores", "2").config("spark.cores.max", "4")
                 .config("spark.ui.enabled", "false").getOrCreate())
        sc = spark.sparkContext
        n = args.nodes

        def barrier_job():
            sc.parallelize(range(n), n).barrier().mapPartitions(rendezvous).collect()

        def tfspark_job(main_fun, preload):
            env = {} if preload else {"TFSPARK_PRELOAD_TENSORFLOW": "0"}
            return lambda: TFCluster.run(sc, main_fun, None, n, progress=False,
                                         env=env).shutdown()

        jobs = {"(a) barrier job": barrier_job,
                "(b) no-op, no preload": tfspark_job(noop, False),
                "(b) no-op, preload": tfspark_job(noop, True),
                "(c) TF, no preload": tfspark_job(with_tensorflow, False),
                "(c) TF, preload": tfspark_job(with_tensorflow, True)}
        for fn in jobs.values():  # warm-up: Python workers, imports
            fn()
        results = {name: [] for name in jobs}
        for _ in range(args.repeats):  # interleaved, so that a change of load hits all alike
            for name, fn in jobs.items():
                results[name] += timed(fn, 1)
        print(f"\n{n} nodes, {args.repeats} runs each (load after: {os.getloadavg()[0]:.2f})")
        base = statistics.median(results["(a) barrier job"])
        for name, times in results.items():
            median = statistics.median(times)
            print(f"  {name:24s} median {median:.3f}s  best {min(times):.3f}s  "
                  f"{median / base:5.1f}x (a)")
        spark.stop()


if __name__ == "__main__":
    main()
