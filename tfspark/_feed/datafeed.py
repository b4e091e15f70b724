"""Node side of the Spark feed: receive partitions, spill them to local disk, serve them to TF.

Runs inside a TF node's own process (``InputMode.SPARK``, chief and workers only). The
receiver (:mod:`tfspark._feed.receiver`) spills what the feeding Spark tasks send to local disk
and tells the :class:`DataFeed`, which serves those files:

* ``dataset(batch_size)`` -- a ``tf.data.Dataset`` of one epoch of this node's share of the next
  ``train()`` feed, in **per-worker batches** (global batch = ``batch_size x num_workers``).
  It starts once the feed is complete: every node then takes the same number of steps (set by
  the largest share) and trains on each of its rows exactly once per epoch, in a fresh random
  order every epoch unless ``shuffle=False`` (see :mod:`tfspark._feed.spill`). The dataset is marked
  as this node's own share, so ``model.fit`` under MultiWorkerMirroredStrategy does not split
  its batches again (see :mod:`tfspark._feed.shares`). Epochs re-read the spill; the Spark data is
  never recomputed.
* ``next_batch``/``should_stop``/``batch_results``/``terminate`` -- TensorFlowOnSpark's API,
  ``num_epochs`` passes in all: shuffled passes start when the feed is complete; with
  ``shuffle=False`` rows stream in as partitions arrive.
"""
from __future__ import annotations

import itertools
import os
import tempfile
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, Iterator, List, Optional, Tuple

import numpy as np
import pyarrow as pa

from tfspark._feed import shares, spill
from tfspark._feed.arrow_columns import (FeedDataError, numpy_columns, row_shape, rows_of,
                                         structure_of)
from tfspark._feed.protocol import TRAIN
from tfspark._feed.receiver import FeedReceiver
from tfspark._feed.spill import SpilledRows, batch_sizes, epoch_order, steps_per_epoch
from tfspark._strategies import mwms

_END, _BOUNDARY = object(), object()  # markers in a stream of column blocks

#: Rows per block that ``next_batch`` takes from a shuffled pass at a time.
_NEXT_BATCH_BLOCK = 4096

Columns = Dict[str, np.ndarray]


@dataclass
class _TrainFeed:
    feed_id: int
    files: List[Tuple[int, str, int]] = field(default_factory=list)  # (partition, path, rows)
    ended: bool = False
    rows_per_node: List[int] = field(default_factory=list)
    num_epochs: int = 1
    schema: Optional[pa.Schema] = None
    has_validation: bool = False  # validation rows follow as feed -feed_id

    def paths(self) -> List[str]:
        """The spilled files in partition order (the order the data had in Spark)."""
        return [path for _, path, _ in sorted(self.files)]


class _InferencePartition:
    def __init__(self, path: Optional[str], rows: int):
        self.path, self.rows = path, rows
        self.results: List[Any] = []
        self.done = threading.Event()
        if rows == 0:
            self.done.set()


class DataFeed:
    """This node's share of the data that ``TFCluster.train``/``inference`` feed from Spark.

    ``shuffle``/``seed`` are the defaults of :meth:`dataset`, :meth:`dataset_fn` and
    :meth:`next_batch`: a fresh random order of all this node's rows every epoch, reproducible
    from ``seed`` (drawn at random when ``None``); ``shuffle=False`` keeps the fed order.
    """

    def __init__(self, node_index: int, train_mode: Optional[bool] = True, shuffle: bool = True,
                 seed: Optional[int] = None):
        self.node_index = node_index  # among the nodes that receive rows
        self.train_mode = train_mode
        self.shuffle = shuffle
        self.seed = seed
        # of the feed the last dataset()/dataset_fn() serves:
        self.steps_per_epoch: Optional[int] = None
        self.num_epochs: Optional[int] = None
        self.rows_per_node: List[int] = []  # rows each node received, by shard index
        self.spill_root: Optional[str] = None  # where PSS workers spill (see dataset_fn)
        self._changed = threading.Condition()
        self._feeds: Dict[int, _TrainFeed] = {}
        self._next_dataset_feed = 1
        self._served_feed: Optional[_TrainFeed] = None  # the last dataset()/dataset_fn() serves
        self._inference: Deque[_InferencePartition] = deque()
        self._pending_results: Deque[List[Any]] = deque()  # [partition, rows not yet answered]
        self._stream: Optional[Iterator[Any]] = None
        self._leftover: Optional[Columns] = None
        self._driver_done = False  # the driver will feed no more data
        self._terminated = False  # this node wants no more data

    def _seed(self, seed: Optional[int]) -> int:
        if seed is not None:
            return int(seed)
        if self.seed is None:
            self.seed = int(np.random.SeedSequence().entropy % (1 << 63))
        return int(self.seed)

    # ------------------------------------------------------------ called by the receiver
    def add_train_file(self, feed_id: int, partition: int, path: Optional[str], rows: int) -> None:
        with self._changed:
            if path is not None:
                self._feeds.setdefault(feed_id, _TrainFeed(feed_id)).files.append(
                    (partition, path, rows))
            self._changed.notify_all()

    def end_feed(self, feed_id: int, rows_per_node: List[int], num_epochs: int,
                 schema: bytes = b"", has_validation: bool = False) -> None:
        """Feed ``feed_id`` is complete (a negative id: the validation rows of feed -id)."""
        with self._changed:
            feed = self._feeds.setdefault(feed_id, _TrainFeed(feed_id))
            feed.ended, feed.rows_per_node, feed.num_epochs = True, rows_per_node, num_epochs
            feed.has_validation = has_validation
            if schema:
                feed.schema = pa.ipc.read_schema(pa.py_buffer(schema))
            self._changed.notify_all()

    def add_inference_partition(self, path: Optional[str], rows: int) -> _InferencePartition:
        partition = _InferencePartition(path, rows)
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

    # ------------------------------------------------------------ tf.data
    def dataset(self, batch_size: int, label: Optional[str] = None, *,
                shuffle: Optional[bool] = None, seed: Optional[int] = None,
                timeout: Optional[float] = None):
        """One epoch of this node's share of the next ``train()`` feed, as a ``tf.data.Dataset``.

        Parameters
        ----------
        batch_size : rows per batch on this node -- a **per-worker batch**: each training step
            takes one batch from every node, so the global batch is ``batch_size x
            num_workers``. Every node yields ``feed.steps_per_epoch`` batches (set by the
            largest share); a node with fewer rows ends its epoch with a few smaller batches,
            so each row is used exactly once per epoch.
        label : with DataFrames, the label column: elements become ``(features, label)``.
        shuffle, seed : visit the rows in a fresh random order every epoch (default), a
            permutation of the node's whole share reproducible from ``seed``; ``shuffle=False``
            keeps the fed order (partition by partition).
        timeout : seconds to wait for the feed to complete (``None``: as long as it takes).

        Elements: a dict ``{column: tensor}`` for DataFrames; for RDDs, a tuple of tensors when
        elements are tuples/lists (``(features, label)`` for pairs), else one tensor. With
        ``label="col"`` a DataFrame's elements are ``(features, label)``, features being the
        one remaining column's tensor or a dict of the remaining columns.

        Give it to ``model.fit(dataset, epochs=feed.num_epochs)`` as it is, or map it first:
        it is marked as this node's own share, so MultiWorkerMirroredStrategy neither shards it
        nor splits its batches (:mod:`tfspark._feed.shares`). Each iteration is one epoch.
        """
        _check_batch_size(batch_size)
        feed = self._next_train_feed(timeout)
        self._serving(feed, steps_per_epoch(feed.rows_per_node, batch_size))
        return self._share_dataset(feed, batch_size, label,
                                   self.shuffle if shuffle is None else shuffle, seed)

    def validation_dataset(self, batch_size: int, label: Optional[str] = None, *,
                           timeout: Optional[float] = None):
        """This node's share of the validation rows given with the feed :meth:`dataset` serves
        (``cluster.train(data, validation_data=...)``), in fed order, for
        ``model.fit(..., validation_data=...)``.

        Built like :meth:`dataset`: per-worker batches of ``batch_size``, the same number of
        batches on every node (smaller ones end a smaller share), every validation row exactly
        once per pass -- so Keras's ``val_loss`` and ``val_*`` metrics are over exactly the
        validation rows. Call it after :meth:`dataset`.
        """
        _check_batch_size(batch_size)
        served = self._served_feed
        if served is None:
            raise FeedDataError("call feed.dataset(...) first: validation_dataset() serves the "
                                "validation rows of the feed dataset() serves")
        if not served.has_validation:
            raise FeedDataError(f"feed {served.feed_id} came without validation rows: pass "
                                "validation_data= to cluster.train on the driver")
        feed = self._wait_for_feed(-served.feed_id, timeout)
        return self._share_dataset(feed, batch_size, label, shuffle=False, seed=None)

    def _share_dataset(self, feed: _TrainFeed, batch_size: int, label: Optional[str],
                       shuffle: bool, seed: Optional[int]):
        """One epoch of this node's share of ``feed`` as a marked ``tf.data.Dataset``."""
        import tensorflow as tf
        mwms.before_first_tf_op()

        mine = self._rows_of_this_node(feed)
        steps = steps_per_epoch(feed.rows_per_node, batch_size)
        sizes = batch_sizes(mine, steps, batch_size)
        rows = self._spilled(feed, mine, laid_out=shuffle)
        seed, epochs, current = self._seed(seed), itertools.count(), {}
        node, tail = self.node_index, sizes[sizes.count(batch_size):]  # full batches come first
        full = mine - sum(tail)
        block = max(1, spill.BLOCK_BYTES // max(1, rows.row_bytes * batch_size)) * batch_size

        # Python hands TF whole blocks of full batches, which TF's C++ rebatch splits: one
        # Python call a block, not a batch. The few smaller batches that end a share follow.
        # Each block is a new set of arrays: TF may still read the last one (see batches()).
        def full_batches():
            current["order"] = epoch_order(mine, shuffle, seed, next(epochs), node)
            blocks = [block] * (full // block) + ([full % block] if full % block else [])
            yield from rows.batches(current["order"][:full], blocks)

        def smaller_batches():
            yield from rows.batches(current["order"][full:], tail)

        signature = {f.name: tf.TensorSpec((None,) + row_shape(f), _tf_dtype(tf, f))
                     for f in rows.schema}
        dataset = tf.data.Dataset.from_generator(full_batches, output_signature=signature)
        dataset = dataset.prefetch(1).rebatch(batch_size).concatenate(
            tf.data.Dataset.from_generator(smaller_batches, output_signature=signature))
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(steps))
        structure = _structurer(structure_of(rows.schema), list(signature), label)
        return shares.node_share(
            dataset.map(structure, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2))

    def dataset_fn(self, batch_size: int, label: Optional[str] = None, *,
                   shuffle: Optional[bool] = None, seed: Optional[int] = None,
                   shuffle_buffer: int = 8192, timeout: Optional[float] = None):
        """ParameterServerStrategy (on the chief): a ``dataset_fn`` for the next ``train()``
        feed, for ``tf.keras.utils.experimental.DatasetCreator``.

        Each worker reads its own share -- the rows it was fed, spilled as small TFRecord files
        in its own folder -- repeated, in batches of ``batch_size``; elements are structured as
        in :meth:`dataset`. Sets ``steps_per_epoch`` (one pass over all workers' rows) and
        ``num_epochs``.

        ``shuffle`` (default: the feed's): every pass reads the files in a fresh order (seeded
        by ``seed``), interleaves 8 of them and shuffles records in a ``shuffle_buffer``. A
        ``dataset_fn`` runs as a graph on the workers, so this is a buffer shuffle, not the
        whole-share permutation of :meth:`dataset`. ``shuffle=False`` keeps the fed order.

        ParameterServerStrategy's coordinator runs each step on whichever worker is free, so in
        one epoch a fast worker trains on more than its share and a slow one on less; over many
        epochs each row is seen about ``num_epochs`` times, but not exactly once per epoch (use
        MultiWorkerMirroredStrategy for that). tfspark says so once when there are several
        workers.
        """
        import tensorflow as tf

        _check_batch_size(batch_size)
        feed = self._next_train_feed(timeout)
        if feed.schema is None:
            raise FeedDataError(f"feed {feed.feed_id} carried no rows")
        self._serving(feed, -(-sum(feed.rows_per_node) // batch_size))
        if len(feed.rows_per_node) > 1:
            shares.warn_once(
                "tfspark: ParameterServerStrategy runs each step on whichever worker is free, "
                f"so each of the {len(feed.rows_per_node)} workers trains on about, not "
                "exactly, its share of the rows per epoch (MultiWorkerMirroredStrategy trains "
                "every row exactly once per epoch).")
        shuffle = self.shuffle if shuffle is None else shuffle
        seed = self._seed(seed)
        spec = {f.name: tf.io.FixedLenFeature(row_shape(f), _tf_dtype(tf, f, parsed=True))
                for f in feed.schema}
        casts = {f.name: _tf_dtype(tf, f) for f in feed.schema}
        pattern = f"{self.spill_root}/{TRAIN}-{feed.feed_id}/*.tfrecord"
        structure = _structurer(structure_of(feed.schema), list(spec), label)

        def parse(records):
            parsed = tf.io.parse_example(records, spec)
            return structure({k: tf.cast(v, casts[k]) for k, v in parsed.items()})

        def dataset_fn(input_context):
            files = tf.data.Dataset.list_files(pattern, shuffle=shuffle, seed=seed)
            records = files.interleave(tf.data.TFRecordDataset, cycle_length=8 if shuffle else 1,
                                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            if shuffle:
                records = records.shuffle(shuffle_buffer, seed=seed)
            return records.repeat().batch(batch_size, drop_remainder=True).map(parse).prefetch(2)

        return dataset_fn

    def _serving(self, feed: _TrainFeed, steps: int) -> None:
        self._served_feed = feed
        self.steps_per_epoch, self.num_epochs = steps, feed.num_epochs
        self.rows_per_node = list(feed.rows_per_node)

    def _next_train_feed(self, timeout: Optional[float]) -> _TrainFeed:
        feed = self._wait_for_feed(self._next_dataset_feed, timeout)
        self._next_dataset_feed += 1
        return feed

    def _rows_of_this_node(self, feed: _TrainFeed) -> int:
        mine = feed.rows_per_node[self.node_index] if feed.rows_per_node else 0
        if mine == 0:
            raise FeedDataError(
                f"training node {self.node_index} received no rows from feed {feed.feed_id} "
                f"(rows per node: {feed.rows_per_node}); feed more rows or partitions than "
                "there are workers")
        return mine

    @staticmethod
    def _spilled(feed: _TrainFeed, expected: int, laid_out: bool) -> SpilledRows:
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

    def _wait_for_feed(self, feed_id: int, timeout: Optional[float]) -> _TrainFeed:
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

    # ------------------------------------------------------------ TensorFlowOnSpark API
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
        with self._changed:
            if self._terminated:
                return True
            if not self._driver_done:
                return False
        return self._peek_exhausted()

    def batch_results(self, results: List[Any]) -> None:
        """Inference: hand back one result per row taken by ``next_batch``, in order."""
        results = list(results)
        with self._changed:
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
        with self._changed:
            self._terminated = True
            self._changed.notify_all()
        with self._changed:
            waiting = list(self._inference) + [p for p, _ in self._pending_results]
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
            with self._changed:
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
                with self._changed:
                    self._changed.wait_for(lambda: self._feeds or self._inference
                                           or self._driver_done or self._terminated)
                    self.train_mode = bool(self._feeds) or not self._inference
            self._stream = self._train_stream() if self.train_mode else self._inference_stream()
        return self._stream

    def _wait(self, ready) -> bool:
        """Wait until ``ready()``; False if the data ran out first."""
        with self._changed:
            self._changed.wait_for(lambda: ready() or self._driver_done or self._terminated)
            return ready() and not self._terminated

    def _train_stream(self) -> Iterator[Tuple[Columns, str]]:
        feed_id = 1
        while self._wait(lambda: feed_id in self._feeds):
            feed = self._feeds[feed_id]
            if self.shuffle:
                if not self._wait(lambda: feed.ended):
                    return
                yield from self._shuffled_passes(feed)
            else:
                yield from self._streamed_passes(feed)
            feed_id += 1

    def _shuffled_passes(self, feed: _TrainFeed) -> Iterator[Tuple[Columns, str]]:
        mine = feed.rows_per_node[self.node_index] if feed.rows_per_node else 0
        if not mine:
            return
        rows, seed = self._spilled(feed, mine, laid_out=True), self._seed(None)
        structure = structure_of(rows.schema)
        blocks = [_NEXT_BATCH_BLOCK] * (mine // _NEXT_BATCH_BLOCK) + (
            [mine % _NEXT_BATCH_BLOCK] if mine % _NEXT_BATCH_BLOCK else [])
        for epoch in range(feed.num_epochs):
            order = epoch_order(mine, True, seed, epoch, self.node_index)
            for columns in rows.batches(order, blocks):
                yield columns, structure

    def _streamed_passes(self, feed: _TrainFeed) -> Iterator[Tuple[Columns, str]]:
        """Rows as partitions arrive; later passes in the same order."""
        seen = 0
        while self._wait(lambda: len(feed.files) > seen or feed.ended):
            if len(feed.files) > seen:
                seen += 1
                yield from _read_columns(feed.files[seen - 1][1])
            elif feed.ended:
                break
        for _ in range(feed.num_epochs - 1):
            for _, path, _ in feed.files:
                yield from _read_columns(path)

    def _inference_stream(self) -> Iterator[Any]:
        while self._wait(lambda: bool(self._inference)):
            with self._changed:
                partition = self._inference.popleft()
            self._current_partition = partition
            yield from _read_columns(partition.path)
            yield _BOUNDARY


def _check_batch_size(batch_size: Any) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise FeedDataError(f"batch_size must be an int >= 1, got {batch_size!r}")


def _read_columns(path: str) -> Iterator[Tuple[Columns, str]]:
    reader = pa.ipc.open_file(pa.memory_map(path))
    structure = structure_of(reader.schema)
    for i in range(reader.num_record_batches):
        yield numpy_columns(reader.get_batch(i)), structure


def _num_rows(columns: Columns) -> int:
    return len(next(iter(columns.values()))) if columns else 0


def _tf_dtype(tf, f: pa.Field, parsed: bool = False):
    """The tensor dtype of a fed column; ``parsed``: as stored in a tf.train.Example."""
    value_type = f.type.value_type if pa.types.is_fixed_size_list(f.type) else f.type
    if pa.types.is_string(value_type) or pa.types.is_binary(value_type):
        return tf.string
    if parsed:
        return tf.float32 if pa.types.is_floating(value_type) else tf.int64
    return tf.as_dtype(value_type.to_pandas_dtype())


def _structurer(structure: str, names: List[str], label: Optional[str]):
    if label is not None and label not in names:
        raise FeedDataError(f"label column '{label}' is not among the fed columns {names}")

    def to_structure(columns):
        if structure == "single":
            return columns[names[0]]
        if structure == "tuple":
            return tuple(columns[n] for n in names)
        if label is None:
            return columns
        features = {n: columns[n] for n in names if n != label}
        return (next(iter(features.values())) if len(features) == 1 else features), columns[label]

    return to_structure


_feed: Optional[DataFeed] = None


def start(node_index: int, host: str, port: int, secret: bytes, spill_dir: str,
          spill_format: str = "arrow", spill_root: Optional[str] = None) -> None:
    """Start this node process's receiver (once, before ``main_fun`` or the TF server runs).

    ``spill_root``: where PSS workers spill (the same path on every node), for the chief's
    :meth:`DataFeed.dataset_fn`.
    """
    global _feed
    _feed = DataFeed(node_index)
    _feed.spill_root = spill_root
    FeedReceiver(_feed, host, port, secret, spill_dir, spill_format)


def get_data_feed(train_mode: Optional[bool] = True, shuffle: bool = True,
                  seed: Optional[int] = None) -> DataFeed:
    """This process's feed (see :meth:`tfspark._node.context.NodeContext.get_data_feed`)."""
    if _feed is None:
        raise FeedDataError("ctx.get_data_feed() needs TFCluster.run(..., input_mode="
                            "InputMode.SPARK) and is available on the chief and workers only")
    _feed.train_mode, _feed.shuffle, _feed.seed = train_mode, shuffle, seed
    return _feed
