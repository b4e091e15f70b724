"""MLflow tracking of a tfspark job: one run per job, logged from the driver
(``TFCluster.run(..., mlflow=True)``; needs ``pip install tfspark[mlflow]``).

* **One run.** The driver starts a run (or continues the one active in its process, e.g. a
  notebook's ``with mlflow.start_run():``) and ends only a run it started.
* **Params**: the cluster's settings (nodes, strategy, input mode, feed mode, restarts...),
  the batch size per worker and global (measured from the first step the chief reports), the
  epochs ``fit`` was given, and the user's ``args`` whose values are plain (``args.<name>``).
* **Metrics**, per epoch (``step`` = epoch): what ``cluster.history`` holds -- loss, metrics,
  ``val_*``, ``rows_per_sec`` -- and ``tfspark_attempt`` (which run of the TF cluster trained
  it). An epoch is logged once: after a restart that resumes from an older backup, the epochs
  trained again are not logged a second time, so steps stay increasing. Streaming jobs log per
  micro-batch instead (``step`` = Spark's batch id).
* **The model**: at ``shutdown()``, the last SavedModel version the chief published
  (``tfspark.export.export_saved_model``) is logged as an MLflow pyfunc model (artifact path
  ``model``), which ``mlflow.pyfunc.spark_udf`` / ``mlflow.pyfunc.load_model`` score with
  (:class:`SavedModelPyfunc`).

Everything is logged **by the driver**: the chief's progress reaches it anyway (tfspark's
channel), so the executors need neither MLflow nor a route to the tracking server -- a tracking
server only the driver can reach works, and so does a local ``mlruns`` folder.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import numbers
import os
import queue
import tempfile
import threading
from typing import Any, Dict, List, Optional

import mlflow
import mlflow.pyfunc
from mlflow.tracking import MlflowClient

logger = logging.getLogger(__name__)

#: How long ``shutdown()`` waits for the queued metrics to be logged.
FINISH_SECS = 120.0

#: What ``TFCluster.run(mlflow={...})`` takes.
OPTIONS = ("experiment_name", "run_name", "run_id", "tracking_uri", "log_model", "tags")


class JobTracking:
    """The MLflow run of one tfspark job, fed by the driver (see the module docstring)."""

    def __init__(self, options: Dict[str, Any]):
        self.options = dict(options)
        if options.get("tracking_uri"):
            mlflow.set_tracking_uri(options["tracking_uri"])
        self.client = MlflowClient()
        self._lock = threading.Lock()
        self._logged_epochs = 0
        self._params: Dict[str, str] = {}
        self.attempt = 0
        self.causes: List[str] = []
        self.exported: Optional[str] = None
        self.streaming = False
        #: per-worker batches in one step: the workers under MWMS, 1 under PSS
        self.replicas = 1
        # events are logged by a thread of their own: a slow tracking server must not hold up
        # the chief's channel, whose reader hands them over (with the attempt they came in)
        self._events: "queue.SimpleQueue" = queue.SimpleQueue()
        self._logger = threading.Thread(target=self._log_events, name="tfspark-mlflow",
                                        daemon=True)
        active = mlflow.active_run()
        if options.get("run_id"):
            self.run_id, self.started_here = options["run_id"], False
        elif active is not None:
            self.run_id, self.started_here = active.info.run_id, False
        else:
            experiment_id = None
            if options.get("experiment_name"):
                experiment = self.client.get_experiment_by_name(options["experiment_name"])
                experiment_id = experiment.experiment_id if experiment else \
                    self.client.create_experiment(options["experiment_name"])
            run = self.client.create_run(
                experiment_id or _default_experiment(), run_name=options.get("run_name"),
                tags=dict(options.get("tags") or {}))
            self.run_id, self.started_here = run.info.run_id, True
        self.client.set_tag(self.run_id, "tfspark_attempts", "1")
        self._logger.start()
        print(f"tfspark: MLflow run {self.run_id} at {mlflow.get_tracking_uri()}", flush=True)

    # ------------------------------------------------------------------------- params
    def log_params(self, params: Dict[str, Any]) -> None:
        """Log what is not logged yet (MLflow params cannot change); None values skipped."""
        fresh = {k: str(v) for k, v in params.items()
                 if v is not None and k not in self._params}
        if not fresh:
            return
        self._params.update(fresh)
        try:
            self.client.log_batch(self.run_id, params=[
                mlflow.entities.Param(k, v) for k, v in fresh.items()])
        except mlflow.exceptions.MlflowException as e:  # the user's run has them already
            logger.warning("tfspark: MLflow params not logged: %s", e)

    # ------------------------------------------------------------------------- events
    def on_event(self, event: Dict[str, Any]) -> None:
        """A progress event from the chief (see :mod:`tfspark._driver.progress`): queued."""
        if event.get("event") != "step":  # steps are not logged
            self._events.put((self.attempt, event))

    def _log_events(self) -> None:
        while True:
            attempt, event = self._events.get()
            if event is None:
                return
            try:
                with self._lock:
                    self._log_event(attempt, event)
            except Exception as e:  # noqa: BLE001 - a side channel: warn, never fail training
                logger.warning("tfspark: MLflow logging failed: %s", e)

    def _log_event(self, attempt: int, event: Dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "train_begin":
            self._log_batch_size(event.get("batch_size"))
            if not self.streaming:
                self.log_params({"epochs": event.get("epochs")})
        elif kind == "epoch_end" and not self.streaming:  # (streaming: one per micro-batch)
            self._log_epoch(event, attempt)
        elif kind == "stream_batch" and event.get("trained"):
            self._log_metrics(dict(event.get("logs") or {}, rows=event.get("rows"),
                                   rows_per_sec=_rate(event), tfspark_attempt=attempt),
                              int(event["batch_id"]))
        elif kind == "exported":
            self.exported = event.get("path")

    def _log_batch_size(self, per_worker: Optional[int]) -> None:
        """The chief's dataset said its per-worker batch (tfspark's datasets do)."""
        if not per_worker:
            return
        self.log_params({"batch_size_per_worker": per_worker,
                         "batch_size_global": per_worker * self.replicas})

    def _log_epoch(self, event: Dict[str, Any], attempt: int) -> None:
        epoch = int(event["epoch"])
        if epoch <= self._logged_epochs:  # trained again after a restart: logged already
            return
        self._logged_epochs = epoch
        metrics = dict(event.get("logs") or {})
        metrics.update(rows_per_sec=_rate(event), tfspark_attempt=attempt)
        self._log_metrics(metrics, epoch)

    def _log_metrics(self, metrics: Dict[str, Any], step: int) -> None:
        values = [mlflow.entities.Metric(k, float(v), _now_ms(), step)
                  for k, v in metrics.items() if isinstance(v, numbers.Number)]
        if values:
            self.client.log_batch(self.run_id, metrics=values)

    # ------------------------------------------------------------------------- lifecycle
    def on_restart(self, attempt: int, cause: str) -> None:
        with self._lock:
            self.attempt = attempt
            self.causes.append(cause)
            self.client.set_tag(self.run_id, "tfspark_attempts", str(attempt + 1))
            self.client.set_tag(self.run_id, "tfspark_restart_causes",
                                " | ".join(self.causes)[:4900])

    def finish(self, failed: Optional[BaseException]) -> None:
        """Log what is queued, the model (after a success), and end the run if the driver
        started it."""
        self._events.put((self.attempt, None))
        self._logger.join(FINISH_SECS)
        try:
            if failed is None and self.exported and self.options.get("log_model", True):
                self._log_model(self.exported)
        except Exception as e:  # noqa: BLE001
            logger.warning("tfspark: logging the model to MLflow failed: %s", e)
            print(f"tfspark: logging the model to MLflow failed: {e}", flush=True)
        finally:
            if failed is not None:
                self.client.set_tag(self.run_id, "tfspark_error",
                                    (str(failed).splitlines() or [type(failed).__name__])[0][:4900])
            if self.started_here:
                self.client.set_terminated(self.run_id, "FAILED" if failed else "FINISHED")

    def _log_model(self, version: str) -> None:
        from tfspark import export
        with tempfile.TemporaryDirectory(prefix="tfspark-mlflow-") as work:
            local = export.local_copy(version, os.path.join(work, "saved_model"))
            with _run_active(self.run_id):
                mlflow.pyfunc.log_model(name="model", python_model=SavedModelPyfunc(),
                                        artifacts={"saved_model": local},
                                        pip_requirements=_requirements())
        self.client.set_tag(self.run_id, "tfspark_model_version", version)
        print(f"tfspark: logged {version} to MLflow as runs:/{self.run_id}/model", flush=True)


class SavedModelPyfunc(mlflow.pyfunc.PythonModel):
    """An exported SavedModel as an MLflow pyfunc model: ``predict`` takes a pandas DataFrame
    whose columns are named after the serving signature's inputs (or one column, for a
    signature with one input) -- numbers, or arrays of numbers per row -- and returns the
    output (one output) or a DataFrame of them."""

    def load_context(self, context):
        import tensorflow as tf
        self._model = tf.saved_model.load(context.artifacts["saved_model"])
        self._call = self._model.signatures["serving_default"]
        self._inputs = self._call.structured_input_signature[1]

    def predict(self, context, model_input, params=None):
        import numpy as np
        import pandas as pd
        columns = list(model_input.columns)
        feeds = {}
        for name, spec in self._inputs.items():
            column = name if name in columns else (columns[0] if len(self._inputs) == 1
                                                   else None)
            if column is None:
                raise ValueError(f"the model's input '{name}' has no column; columns: {columns}")
            values = np.stack([np.asarray(v) for v in model_input[column]])
            feeds[name] = values.astype(spec.dtype.as_numpy_dtype).reshape(
                (len(values),) + tuple(d or -1 for d in spec.shape[1:]))
        out = {k: v.numpy() for k, v in self._call(**feeds).items()}
        if len(out) == 1:
            return next(iter(out.values()))
        return pd.DataFrame({k: list(v) for k, v in out.items()})


def parse_option(option: Any) -> Optional[Dict[str, Any]]:
    """``TFCluster.run(mlflow=...)``: None/False (off), True (defaults), an experiment name,
    or a dict of :data:`OPTIONS`."""
    if option is None or option is False:
        return None
    if option is True:
        return {}
    if isinstance(option, str):
        return {"experiment_name": option}
    if isinstance(option, dict):
        unknown = sorted(set(option) - set(OPTIONS))
        if unknown:
            raise ValueError(f"unknown mlflow option(s) {unknown}; known: {list(OPTIONS)}")
        return dict(option)
    raise ValueError(f"mlflow must be True, an experiment name or a dict of {list(OPTIONS)}, "
                     f"got {option!r}")


def plain_args(args: Any) -> Dict[str, Any]:
    """The user's ``args`` whose values are plain (numbers, strings, booleans), as params."""
    if isinstance(args, argparse.Namespace):
        args = vars(args)
    elif dataclasses.is_dataclass(args) and not isinstance(args, type):
        args = {f.name: getattr(args, f.name) for f in dataclasses.fields(args)}
    if not isinstance(args, dict):
        return {}
    return {f"args.{k}": v for k, v in args.items()
            if isinstance(v, (str, numbers.Number)) and not isinstance(v, complex)}


def _default_experiment() -> str:
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME")
    if name:
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        return MlflowClient().create_experiment(name)
    return os.environ.get("MLFLOW_EXPERIMENT_ID", "0")


def _rate(event: Dict[str, Any]) -> Optional[float]:
    rows, secs = event.get("rows"), event.get("secs")
    return rows / secs if rows and secs else None


def _now_ms() -> int:
    import time
    return int(time.time() * 1000)


def _requirements() -> List[str]:
    from importlib import metadata
    wanted = []
    for name in ("tensorflow", "numpy", "pandas"):
        try:
            wanted.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return wanted


class _run_active:
    """``mlflow.start_run(run_id)`` for the model logging, unless it is the active run."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        self._started = False

    def __enter__(self) -> None:
        active = mlflow.active_run()
        if active is None or active.info.run_id != self.run_id:
            mlflow.start_run(run_id=self.run_id, nested=active is not None)
            self._started = True

    def __exit__(self, *exc) -> None:
        if self._started:
            mlflow.end_run()
