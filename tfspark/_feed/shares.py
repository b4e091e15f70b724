"""A node's own share of the data as a ``tf.data.Dataset``, and how a strategy must hand it out.

Every dataset tfspark gives a TF node -- ``DataFeed.dataset`` (the rows Spark fed this node) and
``tfspark.data.tfrecord_dataset`` (this node's TFRecord files) -- holds that node's *own share*:
the nodes' shares are disjoint and together make the whole data. Batches of such a dataset are
**per-worker batches**: one training step takes one batch from every node, so the global batch
is ``batch_size x num_workers``.

TensorFlow reads a dataset given to ``MultiWorkerMirroredStrategy.experimental_distribute_dataset``
-- which Keras ``model.fit``/``evaluate``/``predict`` call -- the other way: each batch is a
*global* batch, split over all workers' replicas, each worker keeping one piece per step. On a
node's own share that trains every node on only ``1/num_workers`` of its rows. So tfspark marks
its datasets (a ``tf.data.Options.framework_type`` entry, which every dataset derived from them
with ``map``/``prefetch``/``zip``... inherits) and, in the node's process, has
``MultiWorkerMirroredStrategy.experimental_distribute_dataset`` hand a marked dataset to
``distribute_datasets_from_function`` instead: no re-batching, no re-sharding, each worker's
replica takes whole batches of its own share. Datasets without the mark are distributed by TF
as before.

Imported only in a node's process (TensorFlow is imported here).
"""
from __future__ import annotations

import logging
import sys
import threading
from typing import Any, Optional

from tfspark._strategies import tf_patches
from tfspark.errors import TFSparkError

logger = logging.getLogger(__name__)

#: The ``tf.data.Options.framework_type`` entry that marks a node's own share.
NODE_SHARE = "tfspark.node_share"
#: ... and the entry that records its per-worker batch size, ``tfspark.batch_size=<n>``.
BATCH_SIZE = "tfspark.batch_size="

_lock = threading.Lock()
_warn_unmarked = ""  # set when this node takes fed rows outside a marked dataset (next_batch)
_said: set = set()


def node_share(dataset: Any, batch_size: Optional[int] = None) -> Any:
    """Mark ``dataset`` as this node's own share (and every dataset derived from it); with
    ``batch_size``, record its per-worker batch too (reported to the driver, e.g. to MLflow).

    Use it on datasets you build yourself from this node's data, e.g. a
    ``tf.data.Dataset.from_generator`` over ``feed.next_batch``: strategies then neither shard
    it again nor split its batches across workers (see the module docstring). tfspark's own
    datasets are marked already.
    """
    import tensorflow as tf

    if not isinstance(dataset, tf.data.Dataset):
        raise TFSparkError(f"node_share() takes a tf.data.Dataset, got {type(dataset).__name__}")
    _install_strategy_rule(tf)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    options.framework_type = [NODE_SHARE] + ([f"{BATCH_SIZE}{int(batch_size)}"]
                                             if batch_size else [])
    return dataset.with_options(options)


def batch_size_of(dataset: Any) -> Optional[int]:
    """The per-worker batch :func:`node_share` recorded on ``dataset`` (or its source)."""
    try:
        marks = dataset.options().framework_type or []
    except AttributeError:
        return None
    sizes = [int(m[len(BATCH_SIZE):]) for m in marks if m.startswith(BATCH_SIZE)]
    return sizes[-1] if sizes else None


def is_node_share(dataset: Any) -> bool:
    """True for datasets marked by :func:`node_share` or derived from one."""
    try:
        return NODE_SHARE in (dataset.options().framework_type or [])
    except AttributeError:  # not a tf.data.Dataset
        return False


def note_rows_taken_directly(how: str) -> None:
    """Record that this node takes its rows outside a marked dataset (``how``), so that an
    unmarked dataset distributed over several workers gets a warning (the strategy rule that
    warns is installed here too, if TensorFlow is loaded; this module never imports it first)."""
    global _warn_unmarked
    _warn_unmarked = how
    tf = sys.modules.get("tensorflow")
    if tf is not None and hasattr(tf, "distribute"):
        _install_strategy_rule(tf)


def warn_once(message: str) -> None:
    """Log ``message`` and print it to stderr (which reaches the driver), once per process."""
    if message in _said:
        return
    _said.add(message)
    logger.info(message)  # printed below; a warning would print twice under TF's root handler
    print(message, file=sys.stderr, flush=True)


def _install_strategy_rule(tf: Any) -> None:
    """Make ``MultiWorkerMirroredStrategy.experimental_distribute_dataset`` hand marked datasets
    to ``distribute_datasets_from_function`` (once per process)."""
    with _lock:
        tf_patches.replace_method(tf.distribute.MultiWorkerMirroredStrategy,
                                  "experimental_distribute_dataset", _distributing_node_shares)


def _distributing_node_shares(distribute_batches: Any) -> Any:
    def experimental_distribute_dataset(self, dataset, options=None):
        if is_node_share(dataset):
            return self.distribute_datasets_from_function(
                lambda input_context: _per_replica(dataset, input_context), options)
        _warn_if_split(self)
        return distribute_batches(self, dataset, options)
    return experimental_distribute_dataset


def _per_replica(dataset: Any, input_context: Any) -> Any:
    replicas = input_context.num_replicas_in_sync // max(1, input_context.num_input_pipelines)
    if replicas > 1:
        raise TFSparkError(
            f"this TF node has {replicas} replicas (devices) under MultiWorkerMirroredStrategy; "
            "tfspark's per-worker datasets need one replica per node: run one TF node per "
            "device (e.g. spark.task.resource.gpu.amount=1)")
    return dataset


def _warn_if_split(strategy: Any) -> None:
    if _warn_unmarked and strategy.num_replicas_in_sync > 1:
        warn_once(
            f"tfspark: this node takes its rows with {_warn_unmarked}, and a dataset without "
            "tfspark's node-share mark is being distributed by MultiWorkerMirroredStrategy: TF "
            "treats its batches as global batches and trains each worker on only 1/"
            f"{strategy.num_replicas_in_sync} of them. If the dataset holds this node's rows, "
            "wrap it with tfspark.data.node_share(dataset), or use feed.dataset().")
