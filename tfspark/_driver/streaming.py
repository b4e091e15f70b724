"""Driver side of streaming training: a Structured Streaming query whose micro-batches train a
running TF cluster (``TFCluster.train_stream``).

The query is ``df.writeStream.foreachBatch(...)`` with the user's ``checkpointLocation``. For
each micro-batch the driver

1. feeds its rows to the training nodes as ``train()`` does (one Spark job; every row to one
   node, equal shares), under a feed id of its own that carries Spark's batch id and the time the
   driver sent it (:func:`tfspark._driver.feeding.deliver_micro_batch`);
2. waits until the chief reports it trained *and* backed up with its batch id (the nodes' side:
   :mod:`tfspark._feed.micro_batches`); only then does ``foreachBatch`` return and Spark commit
   the batch. So a slow cluster holds the next micro-batch back -- its rows wait in the source,
   nodes hold one micro-batch at a time -- and after a failure of either side the backup and
   Spark's checkpoint never disagree by more than the one batch the nodes recognise as trained;
3. has the nodes delete the batch's spilled rows.

A TF cluster that fails during a micro-batch is restarted (``TFCluster``'s restart policy; nodes
restore from the backup) and fed the same micro-batch again. When the query ends -- stopped,
``Trigger.AvailableNow`` done, or failed -- a watcher tells the nodes, whose loop over
``ctx.micro_batches`` ends (with the query's error if it failed); a node failure that no restart
can cure stops the query, and :meth:`StreamingTraining.awaitTermination` raises it.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

from tfspark._driver import feeding
from tfspark._driver.attempt import Attempt
from tfspark.errors import PreflightError, TFSparkError

logger = logging.getLogger(__name__)

#: Micro-batch feeds have ids of their own (base + Spark's batch id), apart from train()'s.
STREAM_FEED_BASE = 1 << 40
#: How many micro-batches ``StreamingTraining.history`` keeps (the newest).
HISTORY_LENGTH = 10_000


@dataclass(frozen=True)
class StreamOptions:
    checkpoint_location: str
    trigger: Optional[Dict[str, Any]]
    query_name: Optional[str]
    feed_timeout: float
    batch_timeout: float


def check_options(df: Any, checkpoint_location: Any, trigger: Any, batch_timeout: Any) -> None:
    """Refuse what cannot be streamed, before the query starts."""
    if not getattr(df, "isStreaming", False):
        raise PreflightError("train_stream() takes a streaming DataFrame (spark.readStream...); "
                             "feed a static RDD/DataFrame with cluster.train(data)")
    if not isinstance(checkpoint_location, str) or not checkpoint_location:
        raise PreflightError("train_stream() needs checkpoint_location: the folder where Spark "
                             "keeps the query's progress (HDFS, or a path the driver keeps), "
                             f"got {checkpoint_location!r}")
    if trigger is not None and (not isinstance(trigger, dict) or len(trigger) != 1):
        raise PreflightError("trigger must be one of DataStreamWriter.trigger's keyword "
                             "arguments as a dict, e.g. {'processingTime': '5 seconds'} or "
                             f"{{'availableNow': True}}, got {trigger!r}")
    if not isinstance(batch_timeout, (int, float)) or isinstance(batch_timeout, bool) \
            or batch_timeout <= 0:
        raise PreflightError(f"batch_timeout must be a positive number of seconds, got "
                             f"{batch_timeout!r}")


class StreamingTraining:
    """A streaming query training the TF cluster: what ``cluster.train_stream`` returns.

    ``query`` is Spark's ``StreamingQuery``; ``stop()``, ``awaitTermination()``, ``isActive``,
    ``lastProgress`` and ``status`` act on it. ``awaitTermination`` also raises the error of a TF
    node that stopped the query. ``history`` has one dict per micro-batch trained, the last
    :data:`HISTORY_LENGTH` (``batch_id``, ``rows``, ``secs``, ``rows_per_sec``, ``version``, and
    the loss and metrics of its ``fit``); ``skipped`` the batch ids Spark replayed that the
    backup showed trained already.
    """

    def __init__(self, end_stream: Callable[[Optional[str]], None],
                 node_failure: Callable[[], Optional[TFSparkError]]):
        self.query: Any = None
        self.history: List[Dict[str, Any]] = []
        self.skipped: List[int] = []
        self.version: Optional[str] = None  # the last SavedModel version published
        self._end_stream, self._node_failure = end_stream, node_failure
        self._error: Optional[BaseException] = None  # what stopped the query, if not the user
        self._ended = threading.Event()

    def start(self, df: Any, options: StreamOptions,
              on_attempt: Callable[[Callable[[Attempt], Any]], Any]) -> None:
        """Start the ``foreachBatch`` query over ``df`` (each micro-batch trained by
        :class:`MicroBatchTrainer` on ``on_attempt``'s cluster) and its watcher."""
        writer = df.writeStream.foreachBatch(MicroBatchTrainer(options, on_attempt)).option(
            "checkpointLocation", options.checkpoint_location)
        if options.trigger is not None:
            writer = writer.trigger(**options.trigger)
        if options.query_name is not None:
            writer = writer.queryName(options.query_name)
        self.query = writer.start()
        threading.Thread(target=self._watch, name="tfspark-stream-watcher", daemon=True).start()

    # ------------------------------------------------------------------- the query's API
    @property
    def isActive(self) -> bool:
        return self.query.isActive

    @property
    def lastProgress(self) -> Optional[Dict[str, Any]]:
        return self.query.lastProgress

    @property
    def status(self) -> Dict[str, Any]:
        return self.query.status

    def stop(self) -> None:
        """Stop the query once the micro-batch in hand is trained; the nodes' loops end."""
        self.query.stop()
        self._ended.wait()

    def awaitTermination(self, timeout: Optional[float] = None) -> Optional[bool]:
        """Wait for the query to end (``timeout``: seconds; then False if it still runs).
        Raises the error that stopped it: a TF node's, or the query's own."""
        if not self._ended.wait(timeout):
            return False
        if self._error is not None:
            raise self._error
        return True if timeout is not None else None

    # ------------------------------------------------------------------------ watching
    def _watch(self) -> None:
        """Until the query ends: stop it if the TF cluster failed beyond a restart; then tell
        the nodes the stream has ended."""
        error: Optional[str] = None
        try:
            while not self.query.awaitTermination(1.0):
                failure = self._node_failure()
                if failure is not None:
                    self._error = failure
                    self.query.stop()
                    break
        except Exception as e:  # noqa: BLE001 - the query failed: its error ends the stream
            self._error = self._node_failure() or e  # foreachBatch raised the node's error
            error = str(e).splitlines()[0] if str(e) else type(e).__name__
        finally:
            try:
                self._end_stream(error)
            finally:
                self._ended.set()

    def on_event(self, event: Dict[str, Any]) -> None:
        """A progress event (see :mod:`tfspark._driver.progress`): keeps the micro-batches the
        chief reported, trained or skipped as trained before."""
        if event.get("event") != "stream_batch":
            return
        if not event.get("trained"):
            self.skipped.append(int(event["batch_id"]))
            return
        secs = float(event.get("secs") or 0.0)
        entry = {"batch_id": int(event["batch_id"]), "rows": int(event["rows"]), "secs": secs,
                 "rows_per_sec": event["rows"] / secs if secs else None,
                 "version": event.get("version")}
        entry.update(event.get("logs") or {})
        self.history.append(entry)
        del self.history[:-HISTORY_LENGTH]  # a query runs on: the newest only
        self.version = event.get("version") or self.version


class MicroBatchTrainer:
    """The ``foreachBatch`` function: train one micro-batch on the running TF cluster (see the
    module docstring). ``on_attempt`` runs a step on the cluster's current attempt, restarting
    the cluster when it fails (``TFCluster._on_current_attempt``)."""

    def __init__(self, options: StreamOptions,
                 on_attempt: Callable[[Callable[[Attempt], Any]], Any]):
        self.options, self._on_attempt = options, on_attempt

    def __call__(self, df: Any, batch_id: int) -> None:
        feed = feeding.Feed(df, 1, self.options.feed_timeout)
        self._on_attempt(lambda attempt: self._train(attempt, feed, int(batch_id)))

    def _train(self, attempt: Attempt, feed: feeding.Feed, batch_id: int) -> None:
        feed_id = STREAM_FEED_BASE + batch_id
        rows = feeding.deliver_micro_batch(attempt, feed, feed_id,
                                           {"batch_id": batch_id, "sent_at": time.time()})
        if not any(rows):
            logger.info("tfspark: micro-batch %d is empty", batch_id)
            return
        chief = attempt.reporting_node()
        deadline = time.monotonic() + self.options.batch_timeout
        attempt.wait_for(lambda: batch_id in attempt.stream_acks or chief.status is not None,
                         deadline, lambda: TFSparkError(
                             f"micro-batch {batch_id} was not trained within batch_timeout="
                             f"{self.options.batch_timeout}s; the TF cluster was stopped"))
        if attempt.failure is not None:
            raise attempt.failure
        if attempt.stream_acks.pop(batch_id, None) is None:
            raise TFSparkError(
                f"{chief.role.label} finished without training micro-batch {batch_id}: "
                "main_fun must loop over ctx.micro_batches(...) until the stream ends")
        feeding.discard_micro_batch(attempt, feed_id)
