"""The ``tf.data`` pipelines a node's feed serves: one epoch of the node's own share
(MultiWorkerMirroredStrategy, or no strategy) and a ParameterServerStrategy ``dataset_fn``
over the workers' TFRecord spills. Built in the node's process (TensorFlow is imported here)."""
from __future__ import annotations

import itertools
from typing import Any, List, Optional

import pyarrow as pa

from tfspark._feed import shares, spill
from tfspark._feed.arrow_columns import row_shape, structure_of
from tfspark._feed.feed_state import FeedState, TrainFeed
from tfspark._feed.protocol import TRAIN
from tfspark._feed.spill import batch_sizes, epoch_order, steps_per_epoch
from tfspark._strategies import mwms
from tfspark.errors import FeedDataError


def share_dataset(state: FeedState, feed: TrainFeed, batch_size: int, label: Optional[str],
                  shuffle: bool, seed: Optional[int]):
    """One epoch of this node's share of ``feed`` as a marked ``tf.data.Dataset``."""
    import tensorflow as tf
    mwms.before_first_tf_op()

    mine = state.rows_of_this_node(feed)
    steps = steps_per_epoch(feed.rows_per_node, batch_size)
    if mine == 0:
        return _empty_share(feed, steps, label)
    sizes = batch_sizes(mine, steps, batch_size)
    rows = state.spilled(feed, mine, laid_out=shuffle)
    seed, epochs, current = state.seed_for(seed), itertools.count(), {}
    node, tail = state.node_index, sizes[sizes.count(batch_size):]  # full batches come first
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
        dataset.map(structure, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2), batch_size)


def _empty_share(feed: TrainFeed, steps: int, label: Optional[str]):
    """``steps`` empty batches shaped like ``feed``'s rows: this node's part of a streaming
    micro-batch with fewer rows than training nodes (every worker takes the same steps)."""
    import tensorflow as tf

    if feed.schema is None:
        raise FeedDataError(f"feed {feed.feed_id} carried no rows")
    empty = {f.name: spill.empty_column(f, 0) for f in feed.schema}
    signature = {f.name: tf.TensorSpec((None,) + row_shape(f), _tf_dtype(tf, f))
                 for f in feed.schema}
    dataset = tf.data.Dataset.from_tensors(
        {name: tf.constant(empty[name], dtype=signature[name].dtype) for name in signature}
    ).repeat(steps)
    structure = _structurer(structure_of(feed.schema), list(signature), label)
    return shares.node_share(dataset.map(structure))


def pss_dataset_fn(state: FeedState, feed: TrainFeed, spill_root: str, batch_size: int,
                   label: Optional[str], shuffle: bool, seed: Optional[int],
                   shuffle_buffer: int):
    """ParameterServerStrategy: the ``dataset_fn`` over ``feed``'s TFRecord spills on the
    workers (see :meth:`~tfspark._feed.datafeed.DataFeed.dataset_fn`)."""
    import tensorflow as tf

    if feed.schema is None:
        raise FeedDataError(f"feed {feed.feed_id} carried no rows")
    if len(feed.rows_per_node) > 1:
        shares.warn_once(
            "tfspark: ParameterServerStrategy runs each step on whichever worker is free, "
            f"so each of the {len(feed.rows_per_node)} workers trains on about, not "
            "exactly, its share of the rows per epoch (MultiWorkerMirroredStrategy trains "
            "every row exactly once per epoch).")
    seed = state.seed_for(seed)
    spec = {f.name: tf.io.FixedLenFeature(row_shape(f), _tf_dtype(tf, f, parsed=True))
            for f in feed.schema}
    casts = {f.name: _tf_dtype(tf, f) for f in feed.schema}
    pattern = f"{spill_root}/{TRAIN}-{feed.feed_id}/*.tfrecord"
    structure = _structurer(structure_of(feed.schema), list(spec), label)

    def parse(records):
        parsed = tf.io.parse_example(records, spec)
        return structure({k: tf.cast(v, casts[k]) for k, v in parsed.items()})

    def dataset_fn(input_context):
        found = tf.io.matching_files(pattern)
        files = tf.data.Dataset.from_tensor_slices(found)
        if shuffle:
            files = files.shuffle(1 << 16, seed=seed, reshuffle_each_iteration=True)
        records = files.interleave(tf.data.TFRecordDataset, cycle_length=8 if shuffle else 1,
                                   num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if shuffle:
            records = records.shuffle(shuffle_buffer, seed=seed)
        rows = records.repeat().batch(batch_size, drop_remainder=True).map(parse)
        # A worker given no rows of this feed (a streaming micro-batch smaller than the
        # cluster) takes empty batches, which train nothing, instead of failing its steps.
        empty = tf.data.Dataset.from_tensors(tf.zeros([0], tf.string)).repeat().map(parse)
        has_rows = tf.data.Dataset.from_tensors(
            tf.cast(tf.size(found) == 0, tf.int64)).repeat()
        return tf.data.experimental.choose_from_datasets([rows, empty], has_rows).prefetch(2)

    return dataset_fn


def check_batch_size(batch_size: Any) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise FeedDataError(f"batch_size must be an int >= 1, got {batch_size!r}")


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
