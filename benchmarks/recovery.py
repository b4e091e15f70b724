"""How fast a TF cluster recovers when a node dies: kill -> first training step after the resume.

    .venv/bin/python benchmarks/recovery.py [--kill process|executor] [--epochs 4] [--steps 40]
        [--repeats 1]

On one Spark standalone cluster started with ``tfspark.testing.spark.StandaloneCluster`` (2
workers x 2 cores on 127.0.0.1; one application, 2 executors x 2 cores), a 2-worker
MultiWorkerMirroredStrategy ``model.fit`` (a small dense model on in-memory data, ``--epochs`` x
``--steps`` steps, backed up every epoch with ``ctx.backup_and_restore`` on a local path) runs:

(a) unkilled: the baseline wall time, ``TFCluster.run`` to ``shutdown`` returning;
(b) killed: the same job, worker:1 killing itself (``--kill process``: its TF process, SIGKILL,
    as the OOM killer does; ``--kill executor``: its executor's JVM, SIGKILL, as a lost
    container is) in the middle of epoch ``epochs - 1``; tfspark restarts the cluster and
    ``model.fit`` resumes after the last backed-up epoch.

Printed: recovery = time of the first training step of the restarted cluster minus time of the
kill (both ``time.time()`` on this one machine, written by the nodes), split into detection
(kill -> restart notice on the driver) and restart (notice -> first step: new barrier stage,
TF start-up, backup fetched, first step), and the killed job's wall time over the unkilled one.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time

os.environ["PYSPARK_PYTHON"] = sys.executable
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main_fun(args, ctx):
    import signal
    import tensorflow as tf

    strategy = ctx.multi_worker_mirrored_strategy()
    x = tf.random.stateless_normal((4096, 16), seed=[1, ctx.worker_num])
    data = tf.data.Dataset.from_tensor_slices((x, tf.reduce_sum(x, 1))).batch(32).repeat()
    with strategy.scope():
        model = tf.keras.Sequential([tf.keras.Input((16,)), tf.keras.layers.Dense(64, "relu"),
                                     tf.keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")

    def mark(name):
        with open(os.path.join(args["marks"], f"{name}-{ctx.attempt}-{ctx.worker_num}"), "w") as f:
            f.write(repr(time.time()))

    class Marks(tf.keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.first = True

        def on_train_batch_end(self, batch, logs=None):
            if self.first:
                mark("first_step")
                self.first = False
            step = int(model.optimizer.iterations.numpy())
            if args["kill"] and ctx.attempt == 0 and ctx.worker_num == 1 and \
                    step == args["kill_step"]:
                mark("kill")
                if args["kill"] == "process":
                    os.kill(os.getpid(), signal.SIGKILL)
                os.kill(_executor_pid(), signal.SIGKILL)

    model.fit(data, epochs=args["epochs"], steps_per_epoch=args["steps"], verbose=0,
              callbacks=[ctx.backup_and_restore(args["backup"]), Marks()])
    return int(model.optimizer.iterations.numpy())


def _executor_pid() -> int:
    pid = os.getpid()
    while pid > 1:
        pid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if b"CoarseGrainedExecutorBackend" in f.read():
                return pid
    raise RuntimeError("no executor JVM above this node")


def _read(marks: str, name: str, attempt: int) -> float:
    times = [float(open(os.path.join(marks, f)).read()) for f in os.listdir(marks)
             if f.startswith(f"{name}-{attempt}-")]
    return min(times)


class _TimedLines:
    """A stderr stand-in that remembers when each line was written."""

    def __init__(self):
        self.lines = []

    def write(self, text: str) -> int:
        self.lines.extend((time.time(), line) for line in text.splitlines() if line)
        return len(text)

    def flush(self) -> None:
        pass


def run_job(sc, work: str, name: str, opts, kill: str):
    from tfspark import TFCluster
    marks = os.path.join(work, name, "marks")
    os.makedirs(marks)
    args = {"marks": marks, "backup": f"file://{work}/{name}/backup", "epochs": opts.epochs,
            "steps": opts.steps, "kill": kill, "kill_step": (opts.epochs - 2) * opts.steps +
            opts.steps // 2}
    stderr = _TimedLines()
    started = time.time()
    with contextlib.redirect_stderr(stderr):
        cluster = TFCluster.run(sc, main_fun, args, 2)
        steps = cluster.shutdown(timeout=600)
    wall = time.time() - started
    notices = [t for t, line in stderr.lines if "restarting the TF cluster" in line]
    return {"wall": wall, "steps": steps, "attempts": len(cluster.attempts), "marks": marks,
            "notice": notices[0] if notices else None, "cause": cluster.attempts[0].cause,
            "stderr": "\n".join(line for _, line in stderr.lines)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kill", choices=["process", "executor"], default="process")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=1)
    opts = parser.parse_args()

    from pyspark.sql import SparkSession
    from tfspark.testing.spark import StandaloneCluster

    with tempfile.TemporaryDirectory(prefix="tfspark-recovery-") as work, \
            StandaloneCluster(os.path.join(work, "spark"), num_workers=2, cores_per_worker=2) as sa:
        spark = (SparkSession.builder.master(sa.master_url).appName("tfspark-recovery")
                 .config("spark.driver.host", "127.0.0.1")
                 .config("spark.driver.bindAddress", "127.0.0.1")
                 .config("spark.executor.cores", "2").config("spark.executor.memory", "1g")
                 .config("spark.ui.enabled", "false")
                 .config("spark.executorEnv.TF_CPP_MIN_LOG_LEVEL", "2").getOrCreate())
        sc = spark.sparkContext
        sc.setLogLevel("ERROR")
        rows = []
        for repeat in range(opts.repeats):
            base = run_job(sc, work, f"clean-{repeat}", opts, "")
            killed = run_job(sc, work, f"killed-{repeat}", opts, opts.kill)
            if killed["attempts"] != 2:
                sys.exit(f"expected one restart, got {killed['attempts']} attempts:\n"
                         f"{killed['stderr'][-3000:]}")
            t_kill = _read(killed["marks"], "kill", 0)
            t_resumed = _read(killed["marks"], "first_step", 1)
            rows.append((base["wall"], killed["wall"], t_resumed - t_kill,
                         killed["notice"] - t_kill, t_resumed - killed["notice"],
                         killed["cause"]))
        spark.stop()

    total = opts.epochs * opts.steps
    print(f"\n2-worker MWMS model.fit, {opts.epochs} epochs x {opts.steps} steps "
          f"({total} steps), worker:1's {opts.kill} SIGKILLed mid-epoch {opts.epochs - 1}")
    print(f"{'unkilled wall s':>16} {'killed wall s':>14} {'ratio':>6} {'recovery s':>11} "
          f"{'= detect s':>11} {'+ restart s':>12}")
    for base_wall, killed_wall, recovery, detect, restart, _ in rows:
        print(f"{base_wall:16.1f} {killed_wall:14.1f} {killed_wall / base_wall:6.2f} "
              f"{recovery:11.1f} {detect:11.1f} {restart:12.1f}")
    print(f"cause of attempt 1: {rows[-1][-1]}")
    print(f"recovery (kill -> first step after the resume), best of {len(rows)}: "
          f"{min(r[2] for r in rows):.1f} s; target < 30 s")


if __name__ == "__main__":
    main()
