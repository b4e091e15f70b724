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
"""
from __future__ import annotations

import importlib
import re
import threading
from typing import Any, Callable, Dict, Optional, Tuple

from .errors import TFSparkError

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
    combined = _combined_class(tfspark_class, type(error))
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
