"""tfspark: run TensorFlow on Apache Spark.

A Spark driver reserves executors as TF nodes in one barrier stage, gives each its
``TF_CONFIG`` and runs the user's training function there; logs, results and errors come back
to the driver.

Names are imported on first use: a TF node's process, or an executor's Python worker, that needs
one module does not pay for the driver's (pyarrow, pyspark.sql, the feed).
"""
import importlib
import logging

#: public name -> the module that defines it
_EXPORTS = {
    "TFCluster": "cluster", "InputMode": "cluster",
    "NodeContext": "context",
    "TFSparkError": "errors", "PreflightError": "errors", "ReservationError": "errors",
    "NodeError": "errors", "FileSystemError": "errors",
    "PredictError": "scoring", "predict": "scoring",
}

__all__ = ["TFCluster", "InputMode", "NodeContext", "TFSparkError", "PreflightError",
           "ReservationError", "NodeError", "FileSystemError", "PredictError", "predict"]
__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name: str):
    """``tfspark.TFCluster`` and the other public names, and submodules (``tfspark.data``)."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))
