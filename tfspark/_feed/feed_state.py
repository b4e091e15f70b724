"""What a node's feed receiver has been given: the feeds' spilled files and row counts, the
inference partitions waiting for answers, and the waits on them.

:class:`FeedState` is the half of a :class:`~tfspark._feed.datafeed.DataFeed` that the receiver
(:mod:`tfspark._feed.receiver`) fills in from its own threads; the tf.data builders
(:mod:`tfspark._feed.datasets`) and TensorFlowOnSpark's ``next_batch`` API
(:mod:`tfspark._feed.next_batch`) read it.
"""
from __future__ import annotations

import os
import tempfile
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, List, Optional, Tuple

import numpy as np
import pyarrow as pa

from tfspark._feed.spill import SpilledRows
from tfspark.errors import FeedDataError


@dataclass
class TrainFeed:
    feed_id: int
    files: List[Tuple[int, str, int]] = field(default_factory=list)  # (partition, path, rows)
    ended: bool = False
    rows_per_node: List[int] = field(default_factory=list)
    num_epochs: int = 1
    schema: Optional[pa.Schema] = None
    has_validation: bool = False  # validation rows follow as feed -feed_id
    stream: Optional[Dict[str, Any]] = None  # a streaming query's micro-batch: its batch id...

    def paths(self) -> List[str]:
        """The spilled files in partition order (the order the data had in Spark)."""
        return [path for _, path, _ in sorted(self.files)]


class InferencePartition:
    def __init__(self, path: Optional[str], rows: int):
        self.path, self.rows = path, rows
        self.results: List[Any] = []
        self.done = threading.Event()
        if rows == 0:
            self.done.set()


class FeedState:
    """A node's received feeds (see the module docstring); ``shuffle``/``seed`` are the
    defaults every reader of them uses."""

    def __init__(self, node_index: int, shuffle: bool = True, seed: Optional[int] = None):
        self.node_index = node_index  # among the nodes that receive rows
        self.shuffle = shuffle
        self.seed = seed
        self._changed = threading.Condition()
        self._feeds: Dict[int, TrainFeed] = {}
        self._inference: Deque[InferencePartition] = deque()
        self._stream: Deque[TrainFeed] = deque()  # micro-batches not yet taken, in order
        self._stream_end: Optional[Dict[str, Any]] = None  # the query ended (and why)
        self._driver_done = False  # the driver will feed no more data
        self._terminated = False  # this node wants no more data

    def seed_for(self, seed: Optional[int]) -> int:
        if seed is not None:
            return int(seed)
        if self.seed is None:
            self.seed = int(np.random.SeedSequence().entropy % (1 << 63))
        return int(self.seed)

    # ------------------------------------------------------------ called by the receiver
    def add_train_file(self, feed_id: int, partition: int, path: Optional[str], rows: int) -> None:
        with self._changed:
            if path is not None:
                self._feeds.setdefault(feed_id, TrainFeed(feed_id)).files.append(
                    (partition, path, rows))
            self._changed.notify_all()

    def end_feed(self, feed_id: int, rows_per_node: List[int], num_epochs: int,
                 schema: bytes = b"", has_validation: bool = False,
                 stream: Optional[Dict[str, Any]] = None) -> None:
        """Feed ``feed_id`` is complete (a negative id: the validation rows of feed -id;
        with ``stream``: a streaming query's micro-batch, served by :meth:`next_micro_batch`)."""
        with self._changed:
            feed = self._feeds.setdefault(feed_id, TrainFeed(feed_id))
            feed.ended, feed.rows_per_node, feed.num_epochs = True, rows_per_node, num_epochs
            feed.has_validation, feed.stream = has_validation, stream
            if schema:
                feed.schema = pa.ipc.read_schema(pa.py_buffer(schema))
            if stream is not None:
                self._stream.append(feed)
            self._changed.notify_all()

    def end_stream(self, why: Dict[str, Any]) -> None:
        """The streaming query has ended: no micro-batch follows those received."""
        with self._changed:
            self._stream_end = why
            self._changed.notify_all()

    def add_inference_partition(self, path: Optional[str], rows: int) -> InferencePartition:
        partition = InferencePartition(path, rows)
        with self._changed:
            if rows:
                self._inference.append(partition)
            self._changed.notify_all()
        return partition

    def driver_done(self) -> None:
        with self._changed:
            self._driver_done = True
            self._changed.notify_all()

    @property
    def discarding(self) -> bool:
        return self._terminated

    # ------------------------------------------------------------ read by the feed's readers
    def wait(self, ready) -> bool:
        """Wait until ``ready()``; False if the data ran out first."""
        with self._changed:
            self._changed.wait_for(lambda: ready() or self._driver_done or self._terminated)
            return ready() and not self._terminated

    def rows_of_this_node(self, feed: TrainFeed) -> int:
        """This node's share of ``feed``; refused when empty, but for a streaming micro-batch of
        fewer rows than nodes (the node then takes empty batches, as TF has it for uneven
        shards)."""
        mine = feed.rows_per_node[self.node_index] if feed.rows_per_node else 0
        if mine == 0 and feed.stream is None:  # a micro-batch smaller than the cluster may
            raise FeedDataError(
                f"training node {self.node_index} received no rows from feed {feed.feed_id} "
                f"(rows per node: {feed.rows_per_node}); feed more rows or partitions than "
                "there are workers")
        return mine

    @staticmethod
    def spilled(feed: TrainFeed, expected: int, laid_out: bool) -> SpilledRows:
        """The node's spilled rows of ``feed``; ``laid_out``: with contiguous column copies
        beside the spill, for random-order gathers (see :mod:`tfspark._feed.spill`)."""
        paths = feed.paths()
        column_dir = tempfile.mkdtemp(prefix="columns-", dir=os.path.dirname(paths[0])) \
            if laid_out and paths else None
        rows = SpilledRows(paths, column_dir)
        if rows.num_rows != expected:
            raise FeedDataError(f"feed {feed.feed_id}: {rows.num_rows} rows are spilled on this "
                                f"node, but the driver counted {expected} delivered to it")
        return rows

    def next_micro_batch(self, timeout: Optional[float]) -> Optional[TrainFeed]:
        """The next micro-batch of the streaming query, in order; None once the query has
        ended (or the driver's shutdown() ended the feeds) and every micro-batch was taken."""
        with self._changed:
            ready = self._changed.wait_for(
                lambda: self._stream or self._stream_end is not None or self._driver_done
                or self._terminated, timeout)
            if not ready:
                raise FeedDataError(f"no micro-batch arrived within {timeout}s and the "
                                    "streaming query has not ended")
            return self._stream.popleft() if self._stream and not self._terminated else None

    @property
    def stream_end(self) -> Optional[Dict[str, Any]]:
        """How the streaming query ended (``{"error": ...}`` if it failed); None while it runs."""
        return self._stream_end

    def forget(self, feed_id: int) -> None:
        """Drop feed ``feed_id`` (a trained micro-batch; the receiver deletes its files)."""
        with self._changed:
            self._feeds.pop(feed_id, None)

    def wait_for_feed(self, feed_id: int, timeout: Optional[float]) -> TrainFeed:
        with self._changed:
            ready = self._changed.wait_for(
                lambda: (feed_id in self._feeds and self._feeds[feed_id].ended)
                or self._driver_done, timeout)
            if not ready or feed_id not in self._feeds:
                why = (f"within {timeout}s" if not ready
                       else "before the driver's shutdown() ended the feeds")
                raise FeedDataError(f"no data arrived for feed {feed_id} {why}: call "
                                    "cluster.train(data) on the driver")
            return self._feeds[feed_id]
