"""Node side of streaming training: a streaming query's micro-batches, each trained exactly once.

``ctx.micro_batches(model, backup_dir, ...)`` iterates over the micro-batches that the driver's
streaming query (``cluster.train_stream``, :mod:`tfspark._driver.streaming`) feeds, in order,
until the query ends. Around the loop's body it keeps the exactly-once promise:

* **before the first**, every node restores the model (and its optimizer) and the id of the last
  micro-batch trained from the backup at ``backup_dir``, so a micro-batch that was trained before
  a failure is recognised and skipped when Spark replays it (a restarted query replays the batch
  it had not committed; a restarted TF cluster is fed the batch in hand again);
* **after each**, every node writes a checkpoint holding the batch id (saving is a collective
  operation under MultiWorkerMirroredStrategy: other workers write to a scratch folder), the
  chief publishes it atomically (:class:`tfspark.backup.BackupDir`), exports a SavedModel
  version when one is due, and only then tells the driver the batch is trained -- the driver's
  ``foreachBatch`` returns, and Spark commits the batch, after that.

Exports are due every ``export_every_batches`` micro-batches or ``export_every_secs`` seconds of
the driver's clock (each micro-batch carries the time the driver sent it), so every worker
decides alike: under MultiWorkerMirroredStrategy the export is collective too.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Any, Callable, Dict, Iterator, Optional

from tfspark._feed.datafeed import DataFeed
from tfspark._feed.feed_state import TrainFeed
from tfspark.errors import FeedDataError, TFSparkError

#: The checkpoint's name for the id of the last micro-batch trained.
LAST_BATCH = "tfspark_last_batch_id"


class MicroBatch:
    """One micro-batch of the streaming query, as this node holds it.

    ``batch_id`` is Spark's, ``rows`` all its rows (over every training node), ``rows_here``
    this node's share. Build its data with :meth:`dataset` (MultiWorkerMirroredStrategy: every
    worker takes the same number of steps and trains every row once) or :meth:`dataset_fn`
    (ParameterServerStrategy's chief); ``steps_per_epoch`` is set then.
    """

    def __init__(self, feed: DataFeed, fed: TrainFeed):
        self._feed, self._fed = feed, fed
        self.batch_id: int = int(fed.stream["batch_id"])
        self.rows: int = sum(fed.rows_per_node)
        holds = fed.rows_per_node and feed.node_index is not None  # not a PSS chief
        self.rows_here: int = fed.rows_per_node[feed.node_index] if holds else 0
        self.steps_per_epoch: Optional[int] = None

    def dataset(self, batch_size: int, label: Optional[str] = None, *,
                shuffle: Optional[bool] = None, seed: Optional[int] = None):
        """This node's share of the micro-batch, one pass, in per-worker batches (see
        :meth:`tfspark._feed.datafeed.DataFeed.dataset`). A micro-batch with fewer rows than
        workers gives the workers without rows empty batches (TF's own way with uneven shares),
        so every worker still takes the same steps."""
        dataset = self._feed.dataset_of(self._fed, batch_size, label, shuffle=shuffle, seed=seed)
        self.steps_per_epoch = self._feed.steps_per_epoch
        return dataset

    def dataset_fn(self, batch_size: int, label: Optional[str] = None, *,
                   shuffle: Optional[bool] = None, seed: Optional[int] = None,
                   shuffle_buffer: int = 8192):
        """ParameterServerStrategy: a ``dataset_fn`` over the workers' shares of the micro-batch
        (see :meth:`tfspark._feed.datafeed.DataFeed.dataset_fn`); train ``steps_per_epoch``."""
        fn = self._feed.dataset_fn_of(self._fed, batch_size, label, shuffle=shuffle, seed=seed,
                                      shuffle_buffer=shuffle_buffer)
        self.steps_per_epoch = self._feed.steps_per_epoch
        return fn

    def __repr__(self) -> str:
        return f"MicroBatch(batch_id={self.batch_id}, rows={self.rows}, rows_here={self.rows_here})"


class MicroBatches:
    """The streaming query's micro-batches on this node (see the module docstring).

    Iterate once: ``for batch in ctx.micro_batches(model, backup_dir): model.fit(
    batch.dataset(64, label="label"), epochs=1)``. The batch in hand is committed when the loop
    asks for the next one; leaving the loop with ``break`` or an exception commits nothing.
    """

    def __init__(self, ctx: Any, feed: DataFeed, model: Any, backup_dir: str, *,
                 export_dir: Optional[str] = None, export_every_batches: Optional[int] = None,
                 export_every_secs: Optional[float] = None, timeout: Optional[float] = None,
                 report: Callable[[Dict[str, Any]], Any] = lambda event: None):
        import tensorflow as tf
        from tfspark.backup import BackupDir

        _check_every("export_every_batches", export_every_batches, int)
        _check_every("export_every_secs", export_every_secs, (int, float))
        if (export_every_batches or export_every_secs) and not export_dir:
            raise TFSparkError("export_every_batches/export_every_secs need export_dir: where "
                               "the SavedModel versions go")
        if export_dir and not (export_every_batches or export_every_secs):
            export_every_batches = 1
        self._ctx, self._feed, self._model, self._timeout = ctx, feed, model, timeout
        self._send = report  # to the driver, from the chief (tfspark._node.fit_progress.report)
        self._export_dir = export_dir
        self._every_batches, self._every_secs = export_every_batches, export_every_secs
        self._backup = BackupDir(backup_dir, ctx)
        self._last_batch = tf.Variable(-1, dtype=tf.int64, trainable=False, name=LAST_BATCH)
        tracked: Dict[str, Any] = {"model": model, LAST_BATCH: self._last_batch}
        if getattr(model, "optimizer", None) is not None:
            tracked["optimizer"] = model.optimizer
        self._checkpoint = tf.train.Checkpoint(**tracked)
        self._scratch = None if self._backup.chief else tempfile.mkdtemp(
            prefix="workertemp-", dir=os.environ.get("TMPDIR"))
        self._manager = tf.train.CheckpointManager(
            self._checkpoint, self._scratch or self._backup.local, max_to_keep=1)
        restored = tf.train.latest_checkpoint(self._backup.local)
        if restored:
            self._checkpoint.restore(restored)
        #: the id of the last micro-batch trained (restored from the backup; -1: none yet)
        self.last_batch_id: int = int(self._last_batch.numpy())
        #: the path of the last SavedModel version this stream exported (on the chief)
        self.exported: Optional[str] = None
        self.batches_trained = 0
        self._iterated = False
        if restored and self._backup.chief:
            print(f"tfspark: resumed from the backup at {self._backup.path}: micro-batches up "
                  f"to {self.last_batch_id} are trained", flush=True)

    def __iter__(self) -> Iterator[MicroBatch]:
        if self._iterated:
            raise TFSparkError("ctx.micro_batches(...) can be iterated once")
        self._iterated = True
        last_export: Optional[float] = None
        since_export = 0
        try:
            while True:
                fed = self._feed.next_micro_batch(self._timeout)
                if fed is None:
                    break
                batch = MicroBatch(self._feed, fed)
                if batch.batch_id <= self.last_batch_id:  # replayed: trained before a failure
                    self._report(batch, trained=False, started=time.monotonic())
                    continue
                started = time.monotonic()
                sent_at = float(fed.stream.get("sent_at", time.time()))
                last_export = sent_at if last_export is None else last_export
                yield batch
                since_export += 1
                export = export_due(since_export, sent_at - last_export, self._every_batches,
                                    self._every_secs)
                self._commit(batch, export)
                if export:
                    since_export, last_export = 0, sent_at
                self._report(batch, trained=True, started=started)
        finally:
            if self._scratch:
                shutil.rmtree(self._scratch, ignore_errors=True)
        why = self._feed.stream_end
        if why and why.get("error"):
            raise TFSparkError(f"the streaming query failed: {why['error']}")

    def _commit(self, batch: MicroBatch, export: bool) -> None:
        """The batch is trained: record it in the backup (and export a version when due)."""
        from tfspark import export as exporting

        self._last_batch.assign(batch.batch_id)
        self._manager.save()
        if self._backup.chief:
            self._backup.publish(force=True)  # atomically: a reader never sees half of it
        self.last_batch_id = batch.batch_id
        self.batches_trained += 1
        if export:
            self.exported = exporting.export_saved_model(self._model, self._export_dir,
                                                         self._ctx) or self.exported

    def _report(self, batch: MicroBatch, trained: bool, started: float) -> None:
        if self._backup.chief:
            self._send({
                "event": "stream_batch", "batch_id": batch.batch_id, "rows": batch.rows,
                "trained": trained, "secs": time.monotonic() - started,
                "version": self.exported})


def export_due(batches: int, secs: float, every_batches: Optional[int],
               every_secs: Optional[float]) -> bool:
    """Whether a version is due after a micro-batch, ``batches`` micro-batches and ``secs``
    seconds of the driver's clock (between the micro-batches' sending) after the last export
    (or the stream's first micro-batch)."""
    return bool((every_batches and batches >= every_batches)
                or (every_secs and secs >= every_secs))


def _check_every(name: str, value: Any, kind: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, kind)
                              or value <= 0):
        raise FeedDataError(f"{name} must be a positive number, got {value!r}")
