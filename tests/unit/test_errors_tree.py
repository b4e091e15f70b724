"""One error tree: every tfspark error class is in tfspark.errors."""
from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import tfspark
from tfspark import errors


def _tfspark_modules():
    for info in pkgutil.walk_packages(tfspark.__path__, "tfspark."):
        if info.name.startswith(("tfspark.testing", "tfspark.compat.tensorflowonspark.TFParallel")):
            continue
        try:
            yield importlib.import_module(info.name)
        except ImportError as e:  # an optional integration's library is not installed
            if "tfspark" in str(e):
                raise


def test_every_tfspark_error_class_is_in_tfspark_errors():
    found = {cls for module in _tfspark_modules() for _, cls in inspect.getmembers(
        module, inspect.isclass) if issubclass(cls, errors.TFSparkError)}
    assert len(found) >= 15
    assert {cls for cls in found if getattr(errors, cls.__name__, None) is not cls} == set()

