"""tfspark: run TensorFlow on Apache Spark.

A Spark driver reserves executors as TF nodes in one barrier stage, gives each its
``TF_CONFIG`` and runs the user's training function there; logs, results and errors come back
to the driver.

The public API is this package's names and its public modules (:data:`PUBLIC_MODULES`); the
machinery lives in private subpackages that mirror the data flow: ``_driver`` (the cluster's
life on the driver), ``_node`` (a TF node's task and process), ``_feed`` (Spark rows to
``tf.data``), ``_tfrecord`` (the TFRecord format), ``_strategies`` (what differs between
MultiWorkerMirroredStrategy and ParameterServerStrategy).

Names are imported on first use: a TF node's process, or an executor's Python worker, that needs
one module does not pay for the driver's (pyarrow, pyspark.sql, the feed).
"""
import importlib
import logging

#: public name -> the module that defines it
_EXPORTS = {
    "TFCluster": "_driver.cluster", "InputMode": "roles",
    "NodeContext": "_node.context",
    "TFSparkError": "errors", "PreflightError": "errors", "ReservationError": "errors",
    "NodeError": "errors", "FileSystemError": "errors",
    "PredictError": "scoring", "predict": "scoring",
    "StreamingTraining": "_driver.streaming",
}

#: the modules users import (``tfspark.data``, ``from tfspark import export``)
PUBLIC_MODULES = ("backup", "compat", "constants", "control", "data", "errors", "export", "fs",
                  "ml", "pack", "roles", "scoring", "session", "testing", "tf_chatter",
                  "tfrecord")

__all__ = ["TFCluster", "InputMode", "NodeContext", "TFSparkError", "PreflightError",
           "ReservationError", "NodeError", "FileSystemError", "PredictError", "predict",
           "StreamingTraining"]
__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name: str):
    """``tfspark.TFCluster`` and the other public names, and the public modules."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    if name in PUBLIC_MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS) + list(PUBLIC_MODULES))
