"""Every change tfspark makes to TensorFlow's or Keras's own classes, in a node's process.

Each was written against the TF versions in :data:`KNOWN_TF_VERSIONS`; applying one under
another TF says so once (stderr, which reaches the driver), since a patch of TF's internals
may no longer fit. What is patched, and why:

* ``tf.distribute.MultiWorkerMirroredStrategy.experimental_distribute_dataset``
  (:mod:`tfspark._feed.shares`): a dataset holding a node's own share is handed to
  ``distribute_datasets_from_function``, so TF neither re-shards it nor splits its batches.
* the class of MWMS's ``extended`` (``CollectiveAllReduceExtended``): its private
  ``_std_server_started`` and ``_enable_check_health`` (:mod:`tfspark._strategies.mwms`): a
  strategy made before the first TF op is not started a second time by the user's own.
* ``Model.fit`` of tf-keras and Keras 3, as soon as either is imported
  (:mod:`tfspark._node.fit_progress`): the chief reports progress to the driver, and workers
  default to ``verbose=0``.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import sys
import threading
from typing import Any, Callable, Iterable

logger = logging.getLogger(__name__)

#: The TF versions (major.minor) these patches were written and tested against.
KNOWN_TF_VERSIONS = ("2.21",)

_lock = threading.Lock()
_checked = False


def check_tf_version() -> bool:
    """Whether the loaded TensorFlow is one the patches know; says so once when it is not."""
    global _checked
    tf = sys.modules.get("tensorflow")
    version = str(getattr(tf, "__version__", "") or "")
    known = ".".join(version.split(".")[:2]) in KNOWN_TF_VERSIONS
    with _lock:
        if known or _checked or not version:
            return known or not version
        _checked = True
    message = (f"tfspark: TensorFlow {version} is not a version tfspark's patches of TF/Keras "
               f"were tested with ({', '.join(KNOWN_TF_VERSIONS)}; see "
               "tfspark._strategies.tf_patches); if a node fails inside TF's distribution "
               f"code or Keras's fit, pin tensorflow=={KNOWN_TF_VERSIONS[-1]}.*")
    logger.info(message)
    print(message, file=sys.stderr, flush=True)
    return False


def replace_method(owner: type, name: str, make: Callable[[Callable], Callable]) -> None:
    """``owner.<name> = make(original)``, once per (owner, name)."""
    check_tf_version()
    original = getattr(owner, name)
    if getattr(original, "_tfspark_patch", False):
        return
    replacement = make(original)
    replacement.__doc__ = original.__doc__
    replacement.__wrapped__ = original  # TF's own, as functools.wraps keeps it
    replacement._tfspark_patch = True
    setattr(owner, name, replacement)


def set_class_attributes(owner: type, **values: Any) -> None:
    """Set TF's private class attributes (see the module docstring for which and why)."""
    check_tf_version()
    for name, value in values.items():
        setattr(owner, name, value)


def after_import(names: Iterable[str], patch: Callable[[Any], None]) -> None:
    """``patch(module)`` for each of ``names`` imported already, and right after the import of
    any other, whoever imports it."""
    names = set(names)
    for name in names:
        if name in sys.modules:
            patch(sys.modules[name])
    sys.meta_path.insert(0, _AfterImport(names, patch))


class _AfterImport(importlib.abc.MetaPathFinder):
    """Calls ``patch(module)`` right after one of ``names`` is imported."""

    def __init__(self, names: set, patch: Callable[[Any], None]):
        self.names, self.patch = names, patch

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.names:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        exec_module, patch = spec.loader.exec_module, self.patch

        def exec_and_patch(module):
            exec_module(module)
            patch(module)

        spec.loader.exec_module = exec_and_patch
        return spec
