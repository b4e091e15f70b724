"""tfspark: run TensorFlow on Apache Spark.

A Spark driver reserves executors as TF nodes in one barrier stage, gives each its
``TF_CONFIG`` and runs the user's training function there; logs, results and errors come back
to the driver.
"""
import logging

from .cluster import InputMode, TFCluster
from .context import NodeContext
from .errors import FileSystemError, NodeError, PreflightError, ReservationError, TFSparkError
from .scoring import PredictError, predict

__all__ = ["TFCluster", "InputMode", "NodeContext", "TFSparkError", "PreflightError",
           "ReservationError", "NodeError", "FileSystemError", "PredictError", "predict"]
__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
