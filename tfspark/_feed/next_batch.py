"""TensorFlowOnSpark's reading API over a node's feed: ``next_batch``, ``should_stop``,
``batch_results``, ``terminate`` (what :class:`~tfspark._feed.datafeed.DataFeed` and the
compatibility package's ``TFNode.DataFeed`` offer).

Training: ``num_epochs`` passes over the node's rows; shuffled passes start when the feed is
complete, with ``shuffle=False`` rows stream in as partitions arrive. Inference: a batch also
ends with its partition, so that partition's results can go back to Spark while the next one
is awaited.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Deque, Dict, Iterator, List, Optional, Tuple

import numpy as np
import pyarrow as pa

from tfspark._feed import shares
from tfspark._feed.arrow_columns import numpy_columns, rows_of, structure_of
from tfspark._feed.feed_state import FeedState, TrainFeed
from tfspark._feed.spill import epoch_order
from tfspark.errors import FeedDataError

_END, _BOUNDARY = object(), object()  # markers in a stream of column blocks

#: Rows per block that ``next_batch`` takes from a shuffled pass at a time.
_NEXT_BATCH_BLOCK = 4096

Columns = Dict[str, np.ndarray]


class RowReader:
    """Rows of ``state`` taken a batch at a time; ``train_mode`` None: whichever the driver
    sends first."""

    def __init__(self, state: FeedState, train_mode: Optional[bool]):
        self.state = state
        self.train_mode = train_mode
        self._pending_results: Deque[List[Any]] = deque()  # [partition, rows not yet answered]
        self._stream: Optional[Iterator[Any]] = None
        self._leftover: Optional[Tuple[Columns, str]] = None

    def next_batch(self, batch_size: int) -> List[Any]:
        """Up to ``batch_size`` rows; fewer (possibly none) only when the data has run out.

        Training: ``num_epochs`` passes over this node's rows, each row once per pass, in a
        fresh random order per pass (from the moment the feed is complete) unless the feed was
        made with ``shuffle=False``, which streams rows in as partitions arrive. Inference: a
        batch also ends with its partition, so that partition's results can go back to Spark
        while the next one is awaited.
        """
        self._blocks()  # with train_mode=None, waits for the first data to tell the mode
        if self.train_mode:
            shares.note_rows_taken_directly("feed.next_batch()")
        rows: List[Any] = []
        while len(rows) < batch_size:
            block = self._next_rows(batch_size - len(rows))
            if block is _END or (block is _BOUNDARY and rows):
                break
            if block is not _BOUNDARY:
                columns, structure = block
                rows.extend(rows_of(columns, structure))
        return rows

    def should_stop(self) -> bool:
        """True once no more data will come: the feed ended (or was terminated) and is used up."""
        with self.state._changed:
            if self.state._terminated:
                return True
            if not self.state._driver_done:
                return False
        return self._peek_exhausted()

    def batch_results(self, results: List[Any]) -> None:
        """Inference: hand back one result per row taken by ``next_batch``, in order."""
        results = list(results)
        with self.state._changed:
            while results:
                if not self._pending_results:
                    raise FeedDataError(f"batch_results got {len(results)} more results than "
                                        "rows were taken with next_batch")
                pending = self._pending_results[0]
                partition, missing = pending
                taken, results = results[:missing], results[missing:]
                partition.results.extend(taken)
                pending[1] -= len(taken)
                if pending[1] == 0:
                    self._pending_results.popleft()
                    if len(partition.results) == partition.rows:
                        partition.done.set()

    def terminate(self) -> None:
        """Stop taking data: what is still being fed is received and dropped."""
        with self.state._changed:
            self.state._terminated = True
            self.state._changed.notify_all()
        with self.state._changed:
            waiting = list(self.state._inference) + [p for p, _ in self._pending_results]
        for partition in waiting:
            partition.done.set()

    def _next_rows(self, limit: int):
        """The next at most ``limit`` rows as ``(columns, structure)``, or ``_BOUNDARY`` between
        inference partitions, or ``_END``."""
        if self._leftover is None:
            item = next(self._blocks(), _END)
            if item is _END or item is _BOUNDARY:
                return item
            self._leftover = item
        columns, structure = self._leftover
        taken = {k: v[:limit] for k, v in columns.items()}
        rest = {k: v[limit:] for k, v in columns.items()}
        self._leftover = (rest, structure) if _num_rows(rest) else None
        if not self.train_mode:
            with self.state._changed:
                self._pending_results.append([self._current_partition, _num_rows(taken)])
        return taken, structure

    def _peek_exhausted(self) -> bool:
        while self._leftover is None:
            item = next(self._blocks(), _END)
            if item is _END:
                return True
            if item is not _BOUNDARY:
                self._leftover = item
        return False

    def _blocks(self) -> Iterator[Any]:
        if self._stream is None:
            if self.train_mode is None:  # whichever the driver sends first
                with self.state._changed:
                    self.state._changed.wait_for(lambda: self.state._feeds or self.state._inference
                                           or self.state._driver_done or self.state._terminated)
                    self.train_mode = bool(self.state._feeds) or not self.state._inference
            self._stream = self._train_stream() if self.train_mode else self._inference_stream()
        return self._stream

    def _train_stream(self) -> Iterator[Tuple[Columns, str]]:
        feed_id = 1
        while self.state.wait(lambda: feed_id in self.state._feeds):
            feed = self.state._feeds[feed_id]
            if self.state.shuffle:
                if not self.state.wait(lambda: feed.ended):
                    return
                yield from self._shuffled_passes(feed)
            else:
                yield from self._streamed_passes(feed)
            feed_id += 1

    def _shuffled_passes(self, feed: TrainFeed) -> Iterator[Tuple[Columns, str]]:
        mine = feed.rows_per_node[self.state.node_index] if feed.rows_per_node else 0
        if not mine:
            return
        rows, seed = self.state.spilled(feed, mine, laid_out=True), self.state.seed_for(None)
        structure = structure_of(rows.schema)
        blocks = [_NEXT_BATCH_BLOCK] * (mine // _NEXT_BATCH_BLOCK) + (
            [mine % _NEXT_BATCH_BLOCK] if mine % _NEXT_BATCH_BLOCK else [])
        for epoch in range(feed.num_epochs):
            order = epoch_order(mine, True, seed, epoch, self.state.node_index)
            for columns in rows.batches(order, blocks):
                yield columns, structure

    def _streamed_passes(self, feed: TrainFeed) -> Iterator[Tuple[Columns, str]]:
        """Rows as partitions arrive; later passes in the same order."""
        seen = 0
        while self.state.wait(lambda: len(feed.files) > seen or feed.ended):
            if len(feed.files) > seen:
                seen += 1
                yield from read_columns(feed.files[seen - 1][1])
            elif feed.ended:
                break
        for _ in range(feed.num_epochs - 1):
            for _, path, _ in feed.files:
                yield from read_columns(path)

    def _inference_stream(self) -> Iterator[Any]:
        while self.state.wait(lambda: bool(self.state._inference)):
            with self.state._changed:
                partition = self.state._inference.popleft()
            self._current_partition = partition
            yield from read_columns(partition.path)
            yield _BOUNDARY


def read_columns(path: str) -> Iterator[Tuple[Columns, str]]:
    reader = pa.ipc.open_file(pa.memory_map(path))
    structure = structure_of(reader.schema)
    for i in range(reader.num_record_batches):
        yield numpy_columns(reader.get_batch(i)), structure


def _num_rows(columns: Columns) -> int:
    return len(next(iter(columns.values()))) if columns else 0
