"""tfspark errors raised in Spark's Python workers, caught on the driver as themselves.

An error tfspark raises inside a Spark task of the user's own action -- a row that
``tfspark.predict`` or ``TFModel.transform`` cannot score, found only when the row is read --
reaches the driver as text: Spark fails the job with the worker's traceback, and PySpark raises
``PythonException`` (classic Spark and Spark Connect alike). :func:`install` makes PySpark's own
conversion of such failures raise the tfspark error instead: an instance of the tfspark class
named on the traceback's last line (``except tfspark.PredictError`` and ``except
TFSparkError`` catch it) that is also an instance of the exception PySpark made (``except
PythonException`` still catches it); its message is tfspark's, then Spark's report.
Failures whose traceback does not end in a tfspark error are left as PySpark makes them.

Such an error is a fault of the data, which every retry of the task would hit again; Spark
would still retry it ``spark.task.maxFailures`` times (4 on a cluster) before failing the job.
So, under classic Spark, the task first asks the driver to cancel its stage, with the error as
the reason (:func:`stage_canceller` on the driver, :func:`cancel_stage` in the task), waits
until the driver has, and only then raises: the job ends on the first failure, and the reason
carries the error to the conversion above. Where the driver cannot be reached (Spark Connect,
an unreachable driver), Spark's retries happen as before.
"""
from __future__ import annotations

import importlib
import logging
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple

from tfspark.control import ChannelError, ControlServer, connect_authenticated, new_secret
from tfspark.errors import TFSparkError

logger = logging.getLogger(__name__)

#: The last line of a Python traceback that ends in a tfspark error.
_TFSPARK_ERROR_LINE = re.compile(r"^(tfspark(?:\.\w+)*)\.(\w+): (.*)$", re.MULTILINE)

_installed = False
_install_lock = threading.Lock()
_classes: Dict[Tuple[type, type], type] = {}


def install() -> None:
    """Wrap PySpark's conversion of JVM/Connect errors (once per process; idempotent)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        from pyspark.errors.exceptions import captured
        captured.convert_exception = _translating(captured.convert_exception)
        try:
            from pyspark.sql.connect.client import core
        except ImportError:  # pyspark without its connect extra: no Connect sessions here
            pass
        else:
            core.convert_exception = _translating(core.convert_exception)
        _installed = True


def _translating(convert: Callable[..., Any]) -> Callable[..., Any]:
    def convert_exception(*args: Any, **kwargs: Any) -> Any:
        converted = convert(*args, **kwargs)
        return as_tfspark_error(converted) or converted

    convert_exception.__wrapped__ = convert  # type: ignore[attr-defined]
    return convert_exception


def as_tfspark_error(error: BaseException) -> Optional[BaseException]:
    """The tfspark error that ``error`` (a PySpark exception) carries from a Python worker, as
    an instance of both classes, or None when it carries none."""
    if isinstance(error, TFSparkError):
        return None
    found = list(_TFSPARK_ERROR_LINE.finditer(str(error)))
    if not found:
        return None
    module, name, message = found[-1].groups()
    try:
        tfspark_class = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None
    if not (isinstance(tfspark_class, type) and issubclass(tfspark_class, TFSparkError)):
        return None
    spark_class = type(error)
    from pyspark.errors.exceptions.captured import CapturedException, UnknownException
    if issubclass(spark_class, UnknownException):  # PySpark re-raises those as Py4J errors
        spark_class = CapturedException
    combined = _combined_class(tfspark_class, spark_class)
    translated = combined.__new__(combined)
    translated.__dict__.update(error.__dict__)
    translated.args = (message,)
    translated.spark_error = error
    translated.__traceback__ = error.__traceback__
    return translated


def _combined_class(tfspark_class: type, spark_class: type) -> type:
    key = (tfspark_class, spark_class)
    if key not in _classes:
        def __str__(self: Any) -> str:
            return (f"{self.args[0]}\n\n(raised in a Spark task; Spark reported it as "
                    f"{type(self.spark_error).__name__}:)\n{self.spark_error}")

        try:
            _classes[key] = type(tfspark_class.__name__, (tfspark_class, spark_class),
                                 {"__str__": __str__, "__module__": tfspark_class.__module__})
        except TypeError:  # layouts that cannot be combined: the tfspark class alone
            _classes[key] = type(tfspark_class.__name__, (tfspark_class,),
                                 {"__str__": __str__, "__module__": tfspark_class.__module__})
    return _classes[key]


# ------------------------------------------------------------ the job ends on the first failure
@dataclass(frozen=True)
class StageCanceller:
    """Where a task reports a fault of its data: the driver's canceller (plain values)."""

    address: Tuple[str, int]
    secret: bytes = field(repr=False)  # never in a repr


class _Canceller:
    """Driver side: cancels the stage a task names, with the error it sends as the reason."""

    def __init__(self, backend: Any, bind: str, host: str):
        self.backend, self.sc = backend, backend.sc
        self.secret = new_secret()
        self.server = ControlServer(self.secret, self._on_message, host=bind).start()
        self.target = StageCanceller((host, self.server.address[1]), self.secret)

    def _on_message(self, connection: Any, message: Dict[str, Any]) -> None:
        stage, error = int(message["stage"]), str(message["error"])[:8000]
        try:
            self.backend.cancel_stage(stage, "\n" + error)
        except Exception as e:  # noqa: BLE001 - Spark's retries then end the job instead
            logger.warning("tfspark: could not cancel stage %d after a data error: %s", stage, e)
        connection.send({"cancelled": stage})


_canceller: Optional[_Canceller] = None


def stage_canceller(backend: Any) -> Optional[StageCanceller]:
    """The driver's canceller for this application's tasks (started once per SparkContext), or
    None where tasks cannot call this process (Spark Connect)."""
    global _canceller
    hosts = backend.task_callback_hosts()
    if hosts is None:
        return None
    with _install_lock:
        if _canceller is None or _canceller.sc is not backend.sc:
            if _canceller is not None:
                _canceller.server.stop()
            _canceller = _Canceller(backend, *hosts)
        return _canceller.target


def cancel_stage(canceller: Optional[StageCanceller], error: TFSparkError,
                 timeout: float = 30.0) -> None:
    """In a Spark task, before raising ``error`` (a fault of the data): have the driver cancel
    this task's stage, and wait until it has. Best effort: on any failure, nothing happens."""
    from pyspark import TaskContext
    task = TaskContext.get()
    if canceller is None or task is None:
        return
    cls = type(error)
    try:
        connection = connect_authenticated(canceller.address, canceller.secret,
                                           timeout=min(10.0, timeout))
        try:
            connection.settimeout(timeout)
            connection.send({"stage": task.stageId(),
                             "error": f"{cls.__module__}.{cls.__name__}: {error}"})
            connection.recv()
        finally:
            connection.close()
    except (ChannelError, OSError) as e:
        logger.warning("tfspark: could not reach the driver to end the job at once: %s", e)
