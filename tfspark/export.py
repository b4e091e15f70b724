"""Chief-only publishing of SavedModels, checkpoints and TensorBoard logs, local or on HDFS.

Owns the layout of an export directory: numbered version subdirectories, as TensorFlow Serving
expects them::

    <export_dir>/1/saved_model.pb, variables/, ...
    <export_dir>/2/...

A new export becomes version ``max(existing numeric versions) + 1`` (``1`` for an empty or
missing directory).  Names that are not plain non-negative integers (hidden temporaries such as
``.3._tmp-...``, ``README``) are ignored.  Max + 1 rather than a timestamp keeps versions small,
ordered and predictable in tests; two concurrent exports to one directory cannot both claim a
number, because the publish refuses to replace an existing version and the loser retries with the
next number.

TensorFlow cannot open ``hdfs://`` paths here (no libhdfs), so everything is written to local
disk first and published with :func:`tfspark.fs.atomic_output` / :func:`tfspark.fs.upload`: an
interrupted publish never leaves a half-written version behind.  All file access goes through
:mod:`tfspark.fs`; this module never talks to HDFS itself.  TensorFlow is imported only inside
the functions that need it.

Under ``MultiWorkerMirroredStrategy`` saving a Keras model is a collective operation, so *every*
worker must call :func:`export_saved_model`; non-chief workers save to a throwaway local
directory that is deleted at once, and only the chief publishes.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
from typing import Any, Iterator, Optional

from tfspark import fs
from tfspark.errors import ExportError, FileSystemError, TFSparkError

__all__ = ["ExportError", "export_saved_model", "save_saved_model", "latest_version",
           "next_version", "versions", "local_copy", "publish_dir", "is_remote", "local_mirror", "PublishDirCallback"]

logger = logging.getLogger(__name__)

_PUBLISH_ATTEMPTS = 5  # concurrent exporters racing for the same version number


def is_remote(path: str) -> bool:
    """True for paths TensorFlow cannot open here (``hdfs://``, ``webhdfs://``)."""
    return fs.split_url(str(path))[0] not in ("", "file")


def _local_path(path: str) -> str:
    return fs.LOCAL.native(path) if not is_remote(path) else path


def _url(path: str, ctx: Any = None) -> str:
    """``path`` resolved by the one rule (:func:`tfspark.fs.resolve`), on a node against its
    ``ctx``: relative paths land in the HDFS home, ``hdfs:///`` gets fs.defaultFS's NameNode."""
    return ctx.absolute_path(str(path)) if ctx is not None else fs.absolute(str(path))


def versions(export_dir: str) -> list:
    """The numeric versions under ``export_dir``, ascending; ``[]`` if it is missing."""
    export_dir = _url(export_dir)
    try:
        entries = fs.get_filesystem(export_dir).scandir(export_dir)
    except FileSystemError as e:
        if getattr(e, "reason", None) == "not_found":
            return []
        raise
    return sorted(int(e.name) for e in entries if e.is_dir and e.name.isdigit())


def next_version(export_dir: str) -> int:
    """The version number the next export to ``export_dir`` gets: max existing + 1, or 1."""
    found = versions(export_dir)
    return found[-1] + 1 if found else 1


def latest_version(export_dir: str) -> str:
    """Path (URL for HDFS) of the highest numbered version directory under ``export_dir``.

    Raises :class:`ExportError` naming ``export_dir`` when it holds no version.
    """
    export_dir = _url(export_dir)
    found = versions(export_dir)
    if not found:
        raise ExportError(f"no exported model under {export_dir}: it has no numbered version "
                          "directory (export with tfspark.export.export_saved_model first)")
    return fs.join(export_dir, str(found[-1]))


def _save(model: Any, local_dir: str) -> None:
    """Write ``model`` as a SavedModel: Keras models with ``model.save``, others with TF."""
    if hasattr(model, "save") and hasattr(model, "fit"):
        model.save(local_dir, save_format="tf", include_optimizer=False)
    else:
        import tensorflow as tf
        tf.saved_model.save(model, local_dir)


def _publish_version(local_dir: str, export_dir: str) -> str:
    """Copy ``local_dir`` to the next free version under ``export_dir``; return its path."""
    last_error: Optional[BaseException] = None
    for _ in range(_PUBLISH_ATTEMPTS):
        target = fs.join(export_dir, str(next_version(export_dir)))
        try:
            with fs.atomic_output(target) as out:
                shutil.copytree(local_dir, out)
            return target
        except FileSystemError as e:
            if getattr(e, "reason", None) != "exists":
                raise
            last_error = e  # another exporter took this number first: take the next one
    raise ExportError(f"could not publish a new version under {export_dir}: "
                      f"{_PUBLISH_ATTEMPTS} version numbers were taken meanwhile") from last_error


def export_saved_model(model: Any, export_dir: str, ctx: Any = None) -> Optional[str]:
    """Export ``model`` as the next numbered SavedModel version under ``export_dir``.

    Parameters
    ----------
    model : a tf.keras (tf-keras) model, or any trackable ``tf.Module``.
    export_dir : local path, ``file://``, ``hdfs://nn:port/...``, ``hdfs:///...`` (NameNode of
        fs.defaultFS) or relative (the HDFS home, or the working directory for a local
        default filesystem); resolved by :func:`tfspark.fs.resolve`, with ``ctx`` if given.
    ctx : the node's :class:`~tfspark._node.context.NodeContext`, or None outside a TF cluster.

    Returns
    -------
    The published version's path (e.g. ``hdfs://nn:8020/models/mnist/3``) on the chief or when
    ``ctx`` is None; ``None`` on other workers, which only take part in the collective save.
    """
    export_dir = _url(export_dir, ctx)
    with _saved_locally(model, export_dir) as local_dir:
        if ctx is not None and not ctx.is_chief:
            return None
        published = _publish_version(local_dir, export_dir)
        logger.info("exported SavedModel to %s", published)
        _tell_driver(published)
        return published


def _tell_driver(version: str) -> None:
    """On a TF node's chief, tell the driver a version was published (MLflow logs the last);
    elsewhere nothing."""
    from tfspark._node import fit_progress
    fit_progress.report({"event": "exported", "path": version})


def save_saved_model(model: Any, path: str, chief: bool = True, ctx: Any = None) -> None:
    """Save ``model`` as a SavedModel at ``path`` itself (no version number; replaced if it
    exists), local or on HDFS. Under MultiWorkerMirroredStrategy every worker calls it (the
    save is collective); only the ``chief`` writes ``path``."""
    path = _url(path, ctx)
    with _saved_locally(model, path) as local_dir:
        if chief:
            publish_dir(local_dir, path)
            logger.info("saved SavedModel to %s", path)


@contextlib.contextmanager
def _saved_locally(model: Any, target: str) -> Iterator[str]:
    """``model`` saved (a collective op under MWMS: every worker calls it) in a local
    directory that is deleted afterwards."""
    staging = fs.scratch_dir("tfspark-export-")
    try:
        local_dir = os.path.join(staging, "model")
        try:
            _save(model, local_dir)
        except Exception as e:
            raise ExportError(f"could not save the model for {target}: "
                              f"{type(e).__name__}: {e}") from e
        yield local_dir
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def local_copy(path: str, local_dir: Optional[str] = None) -> str:
    """A local path TensorFlow can open holding ``path`` (a SavedModel, checkpoint dir, file).

    Local paths are returned as plain paths; HDFS paths are downloaded into ``local_dir``
    (default: a new temporary directory, which the caller may delete).
    """
    path = _url(path)
    if not is_remote(path):
        return _local_path(path)
    local_dir = local_dir or fs.scratch_dir("tfspark-download-")
    target = os.path.join(local_dir, os.path.basename(fs.split_url(path)[2].rstrip("/"))
                          or "download")
    fs.download(path, target, overwrite=True)
    return target


def publish_dir(local: str, remote: str) -> str:
    """Make ``remote`` a copy of the local directory ``local`` (replacing it atomically).

    For TensorBoard logs and checkpoints written locally by TensorFlow and kept on HDFS.  A
    remote path equal to ``local`` is left alone.  Returns ``remote``.
    """
    remote = _url(remote)
    if not is_remote(remote) and os.path.abspath(_local_path(remote)) == os.path.abspath(local):
        return remote
    fs.upload(local, remote, overwrite=True)
    return remote


def local_mirror(path: str, ctx: Any = None) -> str:
    """Where TensorFlow should write ``path``: itself if local, else a new local temp dir.

    A remote ``path`` that already exists is downloaded into the mirror first, so training can
    resume from checkpoints kept on HDFS.  Publish the mirror back with :func:`publish_dir`
    (or :class:`PublishDirCallback`).
    """
    path = _url(path, ctx)
    if not is_remote(path):
        local = _local_path(path)
        os.makedirs(local, exist_ok=True)
        return local
    mirror = os.path.join(fs.scratch_dir("tfspark-mirror-"), "dir")
    if fs.exists(path):
        fs.download(path, mirror)
    else:
        os.makedirs(mirror)
    return mirror


def PublishDirCallback(local: str, remote: str, ctx: Any = None, every_epoch: bool = True):
    """A Keras callback that publishes ``local`` to ``remote`` on the chief.

    At each epoch end (``every_epoch``) and at the end of training.  Other workers do nothing.
    Publishing errors are logged, not raised: a failed upload must not stop training.
    """
    import tensorflow as tf

    chief = ctx is None or ctx.is_chief
    remote = _url(remote, ctx)

    class _PublishDir(tf.keras.callbacks.Callback):
        def _publish(self) -> None:
            if not chief or not os.path.isdir(local):
                return
            try:
                publish_dir(local, remote)
            except TFSparkError as e:
                logger.warning("could not publish %s to %s: %s", local, remote, e)

        def on_epoch_end(self, epoch, logs=None):
            if every_epoch:
                self._publish()

        def on_train_end(self, logs=None):
            self._publish()

    return _PublishDir()
