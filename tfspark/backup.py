"""Resume training after a failure: a backup folder on HDFS (or a shared path), used locally.

TensorFlow cannot open ``hdfs://`` here (no libhdfs), and a restarted TF node may land on
another executor. So a backup lives at a durable path and every node works on a local copy:

* :class:`BackupDir` -- fetched from the durable path when it is made (so every node starts
  from the last published backup), written by TensorFlow locally, published back atomically by
  the chief (:func:`tfspark.export.publish_dir`) after each save.
* :func:`backup_and_restore` -- ``tf.keras.callbacks.BackupAndRestore`` on a :class:`BackupDir`:
  ``model.fit`` resumes from the epoch (or step) after the last backup; a run that finishes
  deletes its backup, so the next run starts fresh. Also as ``ctx.backup_and_restore(path)``.

Custom training loops use :class:`BackupDir` with ``tf.train.CheckpointManager`` (docs/failures.md).
"""
from __future__ import annotations

import logging
import os
import shutil
from typing import Any, Optional, Tuple, Union

from tfspark import export, fs
from tfspark.errors import TFSparkError

logger = logging.getLogger(__name__)


class BackupDir:
    """A training backup folder at ``path`` (local, shared, or on HDFS), worked on locally.

    Parameters
    ----------
    path : where the backup lives, resolved like every tfspark path (``ctx.absolute_path``).
        A local path must be shared by all nodes (e.g. NFS) to resume on another host.
    ctx : the node's context; only the chief (``ctx.is_chief``) publishes and clears.
    """

    def __init__(self, path: str, ctx: Any = None):
        self.path = export._url(path, ctx)
        self.chief = ctx is None or ctx.is_chief
        self.remote = export.is_remote(self.path)
        #: the folder TensorFlow reads and writes
        self.local = export.local_mirror(self.path)
        self._published: Optional[Tuple[float, int]] = self._state()

    def _state(self) -> Optional[Tuple[float, int]]:
        """(newest mtime, number of files) of what the chief would publish."""
        newest, count = 0.0, 0
        for root, dirs, files in os.walk(self.local):
            dirs[:] = [d for d in dirs if not d.startswith("workertemp")]
            for name in files:
                try:
                    newest = max(newest, os.path.getmtime(os.path.join(root, name)))
                except FileNotFoundError:
                    continue  # TensorFlow replaced an older checkpoint meanwhile
                count += 1
        return (newest, count) if count else None

    def publish(self, force: bool = False) -> bool:
        """On the chief, publish the local folder to ``path`` (atomically) if it changed since
        the last publish (or ``force``). True if it was published."""
        if not (self.chief and self.remote):
            return False
        state = self._state()
        if state is None or (state == self._published and not force):
            return False
        staging = fs.scratch_dir("tfspark-backup-")
        try:  # publish a snapshot without other workers' scratch folders
            snapshot = os.path.join(staging, "backup")
            shutil.copytree(self.local, snapshot,
                            ignore=shutil.ignore_patterns("workertemp*"))
            export.publish_dir(snapshot, self.path)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self._published = state
        logger.info("published the training backup to %s", self.path)
        return True

    def clear(self) -> None:
        """On the chief, delete the published backup (training finished)."""
        if self.chief and self.remote:
            fs.delete(self.path, recursive=True, missing_ok=True)


def backup_and_restore(path: str, ctx: Any = None, save_freq: Union[str, int] = "epoch",
                       delete_checkpoint: bool = True):
    """``tf.keras.callbacks.BackupAndRestore`` whose backup lives at ``path`` (HDFS or shared).

    Every node fetches the last published backup when this is called, so ``model.fit`` resumes
    from it; the chief publishes after every save (``save_freq``: ``"epoch"`` or every N
    batches). With ``delete_checkpoint`` (default) a finished ``fit`` deletes the backup, here
    and at ``path``, so the next run starts from scratch.
    """
    import tensorflow as tf

    backup = BackupDir(path, ctx)

    class _BackupAndRestore(tf.keras.callbacks.BackupAndRestore):
        def on_epoch_end(self, epoch, logs=None):
            super().on_epoch_end(epoch, logs)
            self._publish()

        def on_train_batch_end(self, batch, logs=None):
            super().on_train_batch_end(batch, logs)
            if self.save_freq != "epoch":
                self._publish()

        def on_train_end(self, logs=None):
            super().on_train_end(logs)
            if self.delete_checkpoint:
                backup.clear()

        @staticmethod
        def _publish() -> None:
            try:
                backup.publish()
            except TFSparkError as e:  # a lost backup costs a redo, not the training run
                logger.warning("could not publish the training backup to %s: %s", backup.path, e)
                print(f"tfspark: could not publish the training backup to {backup.path}: {e}",
                      flush=True)

    callback = _BackupAndRestore(backup.local, save_freq=save_freq,
                                 delete_checkpoint=delete_checkpoint)
    callback.backup = backup
    return callback
