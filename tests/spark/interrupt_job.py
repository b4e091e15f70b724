"""Driver for test_interrupt.py: a TF cluster interrupted with Ctrl-C (SIGINT), then run again.

    python interrupt_job.py WORK_DIR [classic|connect]

Prints READY once both nodes run (and have written their process id and TF port to WORK_DIR),
INTERRUPTED when SIGINT reaches ``shutdown``, then ACTIVE_JOBS (classic) and SECOND (the result
of a second cluster run in the same driver).
"""
import os
import sys
import time

from pyspark.sql import SparkSession

from tfspark import TFCluster


def hold(work, ctx):
    """A node that 'trains' until it is stopped, after saying where it runs."""
    with open(os.path.join(work, f"node-{ctx.worker_num}.tmp"), "w") as f:
        f.write(f"{os.getpid()} {ctx.port}")
    os.replace(os.path.join(work, f"node-{ctx.worker_num}.tmp"),
               os.path.join(work, f"node-{ctx.worker_num}"))
    while True:
        time.sleep(0.2)


def main(work: str, mode: str) -> None:
    builder = SparkSession.builder.config("spark.ui.showConsoleProgress", "false")
    spark = (builder.remote(os.environ["SPARK_REMOTE"]) if mode == "connect"
             else builder.master("local[3]")).getOrCreate()
    cluster = TFCluster.run(spark, hold, work, 2)
    print("READY", flush=True)
    try:
        cluster.shutdown(timeout=300)
    except KeyboardInterrupt:
        print("INTERRUPTED", flush=True)
    if mode == "classic":
        print("ACTIVE_JOBS", list(spark.sparkContext.statusTracker().getActiveJobsIds()),
              flush=True)
    with TFCluster.run(spark, lambda args, ctx: ctx.worker_num, None, 2) as second:
        pass
    print("SECOND", second.shutdown(), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
