"""Node side of live training progress: ``model.fit`` on the chief reports to the driver.

In a node's process, before ``main_fun`` runs, :func:`install` arranges that as soon as Keras
(tf-keras, or Keras 3) is imported its ``Model.fit`` is wrapped, so the user writes no callback:

* on the reporting node (the chief, or worker 0 without one) ``fit`` gets one more callback,
  which writes progress events -- one JSON object per line -- to a pipe the node's Spark task
  reads and relays to the driver (:mod:`tfspark._driver.progress` shows them);
* on every training node, ``fit`` without an explicit ``verbose`` runs with ``verbose=0``: the
  driver shows progress once, instead of a progress bar per worker.

Rows: for a tfspark dataset (a node's own share, see :mod:`tfspark._feed.shares`) the callback
counts the rows this node trains on, and reports ``rows x num_workers`` (every worker takes one
batch of its own share per step). For other inputs it reports steps only.

Imported only in a node's process; TensorFlow is imported by the user's code, never here first.
"""
from __future__ import annotations

import json
import os
import threading
import time
from typing import Any, Callable, Dict, Optional

from tfspark._strategies import tf_patches

#: The environment variables a node's Spark task sets for its process.
REPORT_FD = "TFSPARK_PROGRESS_FD"  # file descriptor of the pipe to report on (reporting node)
QUIET_FIT = "TFSPARK_QUIET_FIT"  # "1": fit's default verbose becomes 0 (driver shows progress)
NUM_WORKERS = "TFSPARK_PROGRESS_WORKERS"  # workers whose shares make one step's rows

#: Minimum seconds between two step events (the epoch end is always sent).
STEP_EVENT_SECS = 0.5

_KERAS_MODULES = ("tf_keras", "keras")


_reporter: Optional["_Reporter"] = None


def report(event: Dict[str, Any]) -> bool:
    """Send ``event`` to the driver from the reporting node (e.g. a trained micro-batch: see
    :mod:`tfspark._feed.micro_batches`); False on a node that does not report."""
    if _reporter is None:
        return False
    _reporter.send(event)
    return True


def install() -> None:
    """Wrap ``Model.fit`` of whichever Keras gets imported (see the module docstring)."""
    global _reporter
    reporter = _reporter = _Reporter.from_environment()
    quiet = os.environ.get(QUIET_FIT) == "1"
    if reporter is None and not quiet:
        return

    tf_patches.after_import(_KERAS_MODULES, lambda keras: _wrap_fit(keras, reporter, quiet))


def _wrap_fit(keras: Any, reporter: Optional["_Reporter"], quiet: bool) -> None:
    model_class = getattr(keras, "Model", None)
    if model_class is not None:
        tf_patches.replace_method(model_class, "fit",
                                  lambda fit: _fit_with_progress(fit, keras, reporter, quiet))


def _fit_with_progress(fit: Callable, keras: Any, reporter: Optional["_Reporter"],
                       quiet: bool) -> Callable:
    epoch_class, step_class = _callback_classes(keras.callbacks.Callback) if reporter else (
        None, None)

    def fit_with_progress(self, x=None, *args, **kwargs):
        if quiet and "verbose" not in kwargs and len(args) < 4:  # fit(x, y, batch_size, epochs,
            #                                                     verbose, ...)
            kwargs["verbose"] = 0
        if reporter is not None:
            rows = _RowCounter()
            x = rows.wrap(x)
            # ParameterServerStrategy refuses callbacks with batch hooks: epochs only there.
            strategy = type(getattr(self, "distribute_strategy", None)).__name__
            callback = (epoch_class if "ParameterServer" in strategy else step_class)
            kwargs["callbacks"] = list(kwargs.get("callbacks") or []) + [callback(reporter, rows)]
        return fit(self, x, *args, **kwargs)

    return fit_with_progress


class _Reporter:
    """Writes progress events to the pipe the node's task reads (one JSON line each)."""

    def __init__(self, fd: int, num_workers: int):
        self.fd, self.num_workers = fd, num_workers
        self._lock = threading.Lock()

    @classmethod
    def from_environment(cls) -> Optional["_Reporter"]:
        fd = os.environ.get(REPORT_FD)
        if not fd:
            return None
        return cls(int(fd), int(os.environ.get(NUM_WORKERS, "1")))

    def send(self, event: Dict[str, Any]) -> None:
        data = (json.dumps(event) + "\n").encode()
        with self._lock:
            try:
                os.write(self.fd, data)
            except OSError:  # the task stopped reading: progress is best effort
                pass


class _RowCounter:
    """Counts the rows of a tfspark dataset as ``fit`` takes its batches."""

    def __init__(self):
        self.rows = 0
        self.counting = False
        self.batch_size: Optional[int] = None  # per worker, when the dataset says

    def wrap(self, x: Any) -> Any:
        from tfspark._feed.shares import batch_size_of, is_node_share
        if not is_node_share(x):
            return x
        self.batch_size = batch_size_of(x)
        import numpy as np
        import tensorflow as tf

        def count(size):
            self.rows += int(size)
            return np.int64(0)

        is_tuple = isinstance(x.element_spec, tuple)  # map() unpacks tuples into arguments

        def counted(*element):
            structure = element if is_tuple else element[0]
            first = tf.nest.flatten(structure)[0]
            tick = tf.numpy_function(count, [tf.shape(first)[0]], tf.int64, stateful=True)
            with tf.control_dependencies([tick]):
                return tf.nest.map_structure(tf.identity, structure)

        self.counting = True
        return x.map(counted)


def _callback_classes(base: type) -> tuple:
    """Progress callback classes deriving from this Keras's ``Callback``: one that reports
    epochs only, and one that reports steps too."""

    class TFSparkEpochProgress(base):
        def __init__(self, reporter: _Reporter, rows: _RowCounter):
            super().__init__()
            self.reporter, self.counter = reporter, rows
            self.epoch_start = self.last_sent = 0.0
            self.rows_at_start = 0
            self.epoch = 0

        def _rows(self) -> Optional[int]:
            if not self.counter.counting:
                return None
            return (self.counter.rows - self.rows_at_start) * self.reporter.num_workers

        def on_train_begin(self, logs=None):
            self.reporter.send({"event": "train_begin", "epochs": self.params.get("epochs"),
                                "batch_size": self.counter.batch_size})

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch + 1
            self.epoch_start = self.last_sent = time.monotonic()
            self.rows_at_start = self.counter.rows

        def on_epoch_end(self, epoch, logs=None):
            self.reporter.send({"event": "epoch_end", "epoch": epoch + 1,
                                "epochs": self.params.get("epochs"), "logs": _numbers(logs),
                                "rows": self._rows(),
                                "secs": time.monotonic() - self.epoch_start})

        def on_train_end(self, logs=None):
            self.reporter.send({"event": "train_end"})

    class TFSparkProgress(TFSparkEpochProgress):
        def on_train_batch_end(self, batch, logs=None):
            now = time.monotonic()
            steps = self.params.get("steps")
            if now - self.last_sent < STEP_EVENT_SECS and batch + 1 != steps:
                return
            self.last_sent = now
            scale = _step_logs_scale(self.model)
            self.reporter.send({"event": "step", "epoch": self.epoch,
                                "epochs": self.params.get("epochs"), "step": batch + 1,
                                "steps": steps, "rows": self._rows(),
                                "logs": {k: v * scale for k, v in _numbers(logs).items()},
                                "secs": now - self.epoch_start})

    return TFSparkEpochProgress, TFSparkProgress


def _step_logs_scale(model: Any) -> float:
    """tf-keras sums a step's metrics over the replicas under a multi-replica strategy
    (``distribute_reduction_method`` "auto" = "sum" off TPUs), so a step's logs read W times the
    metric; its epoch logs are recomputed from the metrics and are right. 1/W undoes it."""
    method = getattr(model, "distribute_reduction_method", None)
    strategy = getattr(model, "distribute_strategy", None)
    replicas = getattr(strategy, "num_replicas_in_sync", 1) or 1
    if method in ("auto", "sum") and replicas > 1 and "TPU" not in type(strategy).__name__:
        return 1.0 / replicas
    return 1.0


def _numbers(logs: Optional[Dict[str, Any]]) -> Dict[str, float]:
    """The metrics of Keras ``logs`` as plain floats (tensors and numpy values included)."""
    out = {}
    for name, value in (logs or {}).items():
        try:
            out[name] = float(value)
        except (TypeError, ValueError):
            continue
    return out
