"""A training node's spilled rows read back: in fed order or a fresh random order each epoch.

The feed receiver (:mod:`tfspark._feed.receiver`) writes every partition a node receives to local
disk as an Arrow IPC file. This module reads those files back, memory-mapped, for
``DataFeed.dataset`` and ``next_batch``:

* :func:`batch_sizes` -- the per-epoch batch plan. MultiWorkerMirroredStrategy needs every node
  to take the same number of steps, while the nodes' shares may differ by a few rows, and every
  row must be trained on exactly once per epoch. So every node takes ``steps`` batches, where
  ``steps`` comes from the largest share, full ones first; a smaller share ends with a few
  smaller (never empty) batches.
* :func:`epoch_order` -- a true permutation of the node's whole share, fresh every epoch and
  reproducible from ``(seed, epoch)``, or the fed order (partition by partition).
* :class:`SpilledRows` -- gathers rows in any order straight from memory-mapped files, a block
  of batches at a time, so memory stays bounded by the block, not the share. For random order
  it first lays each numeric column out contiguously in one memory-mapped ``.npy`` file (one
  sequential copy of the share, on the node's local disk beside the spill): a random gather is
  then one ``np.take`` per column and block, instead of a scatter per spilled chunk.

Pure numpy/Arrow: no TensorFlow, no sockets, so every rule here has a fast unit test.
"""
from __future__ import annotations

import os
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np
import pyarrow as pa

from tfspark._feed.arrow_columns import FeedDataError, row_shape

#: Rows gathered at once are about this many bytes: a few batches, never the whole share.
BLOCK_BYTES = 32 << 20


def steps_per_epoch(rows_per_node: Sequence[int], batch_size: int) -> int:
    """Steps every training node takes per epoch: enough batches for the largest share."""
    return -(-max(rows_per_node) // batch_size) if rows_per_node else 0


def batch_sizes(rows: int, steps: int, batch_size: int) -> List[int]:
    """``steps`` batch sizes that add up to ``rows``, each between 1 and ``batch_size``.

    As many full batches as possible come first; the rows left over are spread evenly over
    the last batches. Raises :class:`FeedDataError` when ``rows`` cannot fill ``steps``
    non-empty batches (an empty batch would give a NaN loss) or would need more than ``steps``.
    """
    if batch_size < 1:
        raise FeedDataError(f"batch_size must be >= 1, got {batch_size}")
    if rows < steps:
        raise FeedDataError(
            f"{rows} rows cannot fill the {steps} batches per epoch that every node takes "
            f"(batch_size={batch_size}; the largest share sets the step count): feed more rows, "
            "spread them more evenly over the partitions, or use a smaller batch_size")
    if rows > steps * batch_size:
        raise FeedDataError(f"{rows} rows do not fit in {steps} batches of {batch_size}")
    full = steps if batch_size == 1 else min(steps, (rows - steps) // (batch_size - 1))
    left, tail = rows - full * batch_size, steps - full
    if tail == 0:
        return [batch_size] * steps
    small, extra = divmod(left, tail)
    return [batch_size] * full + [small + 1] * extra + [small] * (tail - extra)


def epoch_order(rows: int, shuffle: bool, seed: int, epoch: int, node: int = 0) -> np.ndarray:
    """The order in which a node visits its rows in ``epoch``: fed order, or a permutation of
    all of them drawn from ``(seed, node, epoch)`` (reproducible; different every epoch)."""
    if not shuffle:
        return np.arange(rows, dtype=np.int64)
    return np.random.default_rng([seed, node, epoch]).permutation(rows)


class SpilledRows:
    """The rows of some spilled Arrow IPC files, in file order, memory-mapped.

    Numeric and array columns are numpy views of the mapped files (no copy until gathered);
    string/binary columns stay Arrow arrays and are gathered with Arrow's ``take``. With
    ``column_dir``, numeric columns are also copied, once, into one contiguous memory-mapped
    file each there, for fast random gathers (see the module docstring).
    """

    def __init__(self, paths: Sequence[str], column_dir: Optional[str] = None):
        if not paths:
            raise FeedDataError("no spilled files to read")
        self._chunks: List[Dict[str, object]] = []
        sizes = []
        self.schema: Optional[pa.Schema] = None
        for path in paths:
            reader = pa.ipc.open_file(pa.memory_map(path))
            self.schema = self.schema or reader.schema
            for i in range(reader.num_record_batches):
                batch = reader.get_batch(i)
                if batch.num_rows:
                    self._chunks.append(_column_views(batch))
                    sizes.append(batch.num_rows)
        self._starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        self.num_rows = int(self._starts[-1])
        self.row_bytes = sum(_row_bytes(f) for f in self.schema)  # about
        self._whole: Dict[str, np.ndarray] = {}  # column -> all rows, contiguous
        if column_dir is not None and self._chunks:
            os.makedirs(column_dir, exist_ok=True)
            for i, field in enumerate(self.schema):
                if isinstance(self._chunks[0][field.name], np.ndarray):  # numeric
                    self._whole[field.name] = self._lay_out(field, os.path.join(
                        column_dir, f"column-{i}.npy"))

    def _lay_out(self, field: pa.Field, path: str) -> np.ndarray:
        first = self._chunks[0][field.name]
        whole = np.lib.format.open_memmap(path, mode="w+", dtype=first.dtype,
                                          shape=(self.num_rows,) + first.shape[1:])
        for chunk, start in zip(self._chunks, self._starts):
            column = chunk[field.name]
            whole[start:start + len(column)] = column
        whole.flush()
        return whole

    def take(self, indices: np.ndarray) -> Dict[str, np.ndarray]:
        """Rows ``indices`` (any order) as ``{column: new array of shape (len, *row_shape)}``."""
        n = len(indices)
        out = {f.name: empty_column(f, n) for f in self.schema}
        run = _is_run(indices)
        for name, whole in self._whole.items():
            if run:
                out[name][:] = whole[indices[0]:indices[0] + n] if n else whole[:0]
            else:  # "clip": unbuffered, straight into out (the indices are valid)
                np.take(whole, indices, axis=0, out=out[name], mode="clip")
        if len(self._whole) == len(self.schema):
            return out
        chunk_of = np.searchsorted(self._starts, indices, side="right") - 1
        grouping = np.argsort(chunk_of, kind="stable")
        groups = np.flatnonzero(np.diff(chunk_of[grouping])) + 1
        scratch: Dict[str, np.ndarray] = {}
        for positions in np.split(grouping, groups) if n else []:
            chunk = int(chunk_of[positions[0]])
            local = indices[positions] - self._starts[chunk]
            columns = [(name, column) for name, column in self._chunks[chunk].items()
                       if name not in self._whole]
            if _is_run(positions) and _is_run(local):  # a run of rows in fed order: copy it
                first, start, k = int(positions[0]), int(local[0]), len(local)
                for name, column in columns:
                    run = column[start:start + k]
                    out[name][first:first + k] = run if isinstance(run, np.ndarray) else \
                        run.to_numpy(zero_copy_only=False)
                continue
            for name, column in columns:
                if isinstance(column, np.ndarray):
                    if name not in scratch or len(scratch[name]) < len(local):
                        scratch[name] = np.empty((max(len(local), 256),) + column.shape[1:],
                                                 column.dtype)
                    gathered = np.take(column, local, axis=0, out=scratch[name][:len(local)])
                    out[name][positions] = gathered
                else:
                    out[name][positions] = column.take(pa.array(local)).to_numpy(
                        zero_copy_only=False)
        return out

    def batches(self, order: np.ndarray, sizes: Sequence[int], block_bytes: int = 0
                ) -> Iterator[Dict[str, np.ndarray]]:
        """Consecutive batches of ``sizes`` rows taken in ``order``, gathered a block of about
        ``block_bytes`` (default :data:`BLOCK_BYTES`) at a time.

        Every block is gathered into arrays of its own, never into an earlier block's: a
        consumer may hold on to any batch. ``tf.data.Dataset.from_generator`` does -- TF wraps
        a suitably aligned numpy array without copying it and reads it later (after
        ``prefetch``), so refilling a buffer paired the features of one block with the labels
        of the next.
        """
        if sum(sizes) != len(order):
            raise FeedDataError(f"a batch plan of {sum(sizes)} rows for {len(order)} rows")
        block_rows = max(1, (block_bytes or BLOCK_BYTES) // max(1, self.row_bytes))
        start, i = 0, 0
        while i < len(sizes):
            stop_batch, rows = i, 0
            while stop_batch < len(sizes) and (rows == 0 or rows + sizes[stop_batch] <= block_rows):
                rows += sizes[stop_batch]
                stop_batch += 1
            block = self.take(order[start:start + rows])
            offset = 0
            for size in sizes[i:stop_batch]:
                yield {k: v[offset:offset + size] for k, v in block.items()}
                offset += size
            start, i = start + rows, stop_batch


def _is_run(values: np.ndarray) -> bool:
    """True if ``values`` are consecutive ascending integers."""
    return len(values) < 2 or bool((np.diff(values) == 1).all())


def _column_views(batch: pa.RecordBatch) -> Dict[str, object]:
    views: Dict[str, object] = {}
    for field, column in zip(batch.schema, batch.columns):
        if pa.types.is_fixed_size_list(field.type):
            views[field.name] = column.flatten().to_numpy(zero_copy_only=False).reshape(
                (len(column),) + row_shape(field))
        elif pa.types.is_string(field.type) or pa.types.is_binary(field.type):
            views[field.name] = column
        else:
            views[field.name] = column.to_numpy(zero_copy_only=False)
    return views


def empty_column(field: pa.Field, rows: int) -> np.ndarray:
    if pa.types.is_string(field.type) or pa.types.is_binary(field.type):
        return np.empty(rows, dtype=object)
    value_type = field.type.value_type if pa.types.is_fixed_size_list(field.type) else field.type
    return np.empty((rows,) + row_shape(field), dtype=value_type.to_pandas_dtype())


def _row_bytes(field: pa.Field) -> int:
    if pa.types.is_string(field.type) or pa.types.is_binary(field.type):
        return 64  # a guess: only sizes the gather block
    value_type = field.type.value_type if pa.types.is_fixed_size_list(field.type) else field.type
    return int(np.prod(row_shape(field), dtype=np.int64)) * max(1, value_type.bit_width // 8)
