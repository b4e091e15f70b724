"""MultiWorkerMirroredStrategy step time: a finite per-epoch dataset vs the same batches repeated.

    .venv/bin/python benchmarks/mwms_finite_vs_repeated.py [--steps 300] [--epochs 3] [--rounds 2]

Two TF workers on 127.0.0.1 (no Spark), the MNIST example's CNN, per-worker batches of 32 given
to ``model.fit`` as a node's own share (``tfspark.data.node_share``, as tfspark's datasets). ``finite``: one epoch's batches, ``fit(epochs=n)``, as ``feed.dataset`` is used; TF then
has every worker agree, each step, whether all still have data (``get_next_as_optional``).
``repeated``: the same batches ``repeat()``-ed with ``steps_per_epoch``: no such agreement.
Prints the chief's mean step time over epochs 2..n for each, alternating ``--rounds`` times, and
the ratio repeated / finite.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(os.path.dirname(HERE), "examples", "mnist")
MARK = "MWMS_STEP "


def _worker(index: int, ports: list, mode: str, steps: int, epochs: int) -> None:
    os.environ["TF_CONFIG"] = json.dumps({
        "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
        "task": {"type": "worker", "index": index}})
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import numpy as np
    import tensorflow as tf
    sys.path.insert(0, EXAMPLE)
    from mnist_spark import build_model

    from tfspark.data import node_share

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    rng = np.random.default_rng(index)
    x = rng.random((steps * 32, 784), dtype=np.float32)
    y = rng.integers(0, 10, steps * 32)

    batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    # marked as this node's own share, as tfspark's datasets are: whole batches per worker
    data = node_share(batches.repeat() if mode == "repeated" else batches)
    with strategy.scope():
        model = build_model(tf)
    epoch_secs = []

    class Clock(tf.keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            epoch_secs.append(time.perf_counter() - self.started)

    model.fit(data, epochs=epochs, steps_per_epoch=steps if mode == "repeated" else None,
              callbacks=[Clock()], verbose=0)
    if index == 0:
        print(MARK + json.dumps({"step_ms": 1000 * sum(epoch_secs[1:]) / (steps * (epochs - 1))}),
              flush=True)


def _free_ports(n: int) -> list:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _run(mode: str, steps: int, epochs: int) -> float:
    ports = _free_ports(2)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    procs = [subprocess.Popen([sys.executable, __file__, "--_worker", str(i), "--_ports",
                               ",".join(map(str, ports)), "--_mode", mode, "--steps", str(steps),
                               "--epochs", str(epochs)], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, env=env) for i in range(2)]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    found = [line for line in outs[0].splitlines() if line.startswith(MARK)]
    if not found:
        raise SystemExit(f"{mode}: the chief printed no result (exit codes "
                         f"{[p.returncode for p in procs]})")
    return json.loads(found[0][len(MARK):])["step_ms"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--_worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--_ports", help=argparse.SUPPRESS)
    parser.add_argument("--_mode", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts._worker is not None:
        _worker(opts._worker, [int(p) for p in opts._ports.split(",")], opts._mode, opts.steps,
                opts.epochs)
        return
    results = {"finite": [], "repeated": []}
    for _ in range(opts.rounds):
        for mode in results:
            results[mode].append(_run(mode, opts.steps, opts.epochs))
            print(f"{mode:9s} {results[mode][-1]:6.1f} ms a step", flush=True)
    finite, repeated = min(results["finite"]), min(results["repeated"])
    print(f"best of {opts.rounds}: finite {finite:.1f} ms, repeated {repeated:.1f} ms a step: "
          f"repeated / finite {repeated / finite:.2f}")


if __name__ == "__main__":
    main()
