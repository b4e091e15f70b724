"""Projected MultiWorkerMirroredStrategy scaling, from measured compute time and gradient bytes.

    .venv/bin/python benchmarks/scaling.py [--batch 64] [--steps 30]

For two models -- the MNIST example's CNN (``examples/mnist/mnist_spark.py``) and a dense model of
about 25M parameters -- it measures here, in one process on this machine:

- the compute time of one training step (forward, backward, optimizer) at ``--batch`` rows per
  worker, median over ``--steps`` steps after warm-up, with the threads TF uses by default;
- the bytes one all-reduce moves per worker: every trainable variable's gradient, float32.

and prints, for 2 to 64 workers on 10 and 25 Gb/s networks, the projected step time and scaling
efficiency of synchronous data-parallel training (each worker keeps ``--batch`` rows per step)::

    t_allreduce(N) = 2 (N - 1) / N * bytes / bandwidth + 2 (N - 1) * latency   (ring all-reduce)
    t_step(N)      = t_compute + t_allreduce(N)        (no overlap of compute and communication)
    efficiency(N)  = t_compute / t_step(N)

with ``latency`` = ``--latency-us`` per message (50 us default, a TCP round trip within a rack).
The ring moves each byte ``2 (N-1)/N`` times per worker (reduce-scatter then all-gather), the
bandwidth-optimal all-reduce that TF's collective ops use (RING) over gRPC. Not modelled: the
overlap TF gets by all-reducing gradients in packs while the backward pass runs (better than
projected), stragglers, and gRPC's per-byte CPU cost (worse). On this 2-core machine the compute
time is that of a CPU; a GPU step is 10-100x shorter, which makes the network matter that much
more (the projection with ``--compute-ms`` shows it).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def mnist_cnn(tf):
    import importlib.util
    path = os.path.join(os.path.dirname(__file__), "..", "examples", "mnist", "mnist_spark.py")
    spec = importlib.util.spec_from_file_location("mnist_spark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_model(tf), (784,), 10


def dense_25m(tf):
    """784 -> 4096 -> 4096 -> 1024 -> 10: 24.2M parameters (the "25M" of issue 14)."""
    model = tf.keras.Sequential([
        tf.keras.Input((784,)),
        tf.keras.layers.Dense(4096, activation="relu"),
        tf.keras.layers.Dense(4096, activation="relu"),
        tf.keras.layers.Dense(1024, activation="relu"),
        tf.keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model, (784,), 10


def step_time(tf, model, shape, classes, batch: int, steps: int) -> float:
    """Median seconds of one compiled training step on random data."""
    x = tf.random.uniform((batch, *shape))
    y = tf.random.uniform((batch,), maxval=classes, dtype=tf.int32)
    for _ in range(3):  # trace and warm up
        model.train_on_batch(x, y)
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def projected(compute_s: float, grad_bytes: int, workers: int, gbps: float,
              latency_s: float) -> float:
    """Step time of ``workers`` workers (see the module docstring)."""
    bandwidth = gbps * 1e9 / 8
    allreduce = (2 * (workers - 1) / workers * grad_bytes / bandwidth
                 + 2 * (workers - 1) * latency_s)
    return compute_s + allreduce


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64, help="rows per worker per step")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--latency-us", type=float, default=50.0)
    parser.add_argument("--compute-ms", type=float, default=None,
                        help="use this step compute time instead of measuring (e.g. a GPU's)")
    args = parser.parse_args()

    import tensorflow as tf
    workers = (2, 4, 8, 16, 32, 64)
    for name, build in (("MNIST CNN", mnist_cnn), ("dense 25M", dense_25m)):
        model, shape, classes = build(tf)
        params = sum(int(tf.size(v)) for v in model.trainable_variables)
        grad_bytes = 4 * params
        compute = (args.compute_ms / 1000 if args.compute_ms is not None
                   else step_time(tf, model, shape, classes, args.batch, args.steps))
        print(f"\n{name}: {params:,} parameters, all-reduce {grad_bytes / 1e6:.2f} MB per step, "
              f"compute {compute * 1000:.2f} ms per step at batch {args.batch}"
              f"{' (given)' if args.compute_ms is not None else ' (measured, CPU)'}")
        print(f"  {'workers':>7} " + " ".join(
            f"{f'{g} Gb/s: step, eff.':>24}" for g in (10, 25)))
        for n in workers:
            cells = []
            for gbps in (10, 25):
                t = projected(compute, grad_bytes, n, gbps, args.latency_us * 1e-6)
                cells.append(f"{t * 1000:>14.2f} ms {compute / t:>6.0%}")
            print(f"  {n:>7} " + " ".join(f"{c:>24}" for c in cells))


if __name__ == "__main__":
    main()
