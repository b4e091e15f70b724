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

from typing import Any, Callable, List, Optional

from tfspark._feed.datasets import check_batch_size, pss_dataset_fn, share_dataset
from tfspark._feed.feed_state import FeedState, TrainFeed
from tfspark._feed.next_batch import RowReader
from tfspark._feed.receiver import FeedReceiver
from tfspark._feed.spill import steps_per_epoch
from tfspark.errors import FeedDataError


class DataFeed(FeedState):
    """This node's share of the data that ``TFCluster.train``/``inference`` feed from Spark.

    ``shuffle``/``seed`` are the defaults of :meth:`dataset`, :meth:`dataset_fn` and
    :meth:`next_batch`: a fresh random order of all this node's rows every epoch, reproducible
    from ``seed`` (drawn at random when ``None``); ``shuffle=False`` keeps the fed order.
    """

    def __init__(self, node_index: int, train_mode: Optional[bool] = True, shuffle: bool = True,
                 seed: Optional[int] = None):
        super().__init__(node_index, shuffle, seed)
        # of the feed the last dataset()/dataset_fn() serves:
        self.steps_per_epoch: Optional[int] = None
        self.num_epochs: Optional[int] = None
        self.rows_per_node: List[int] = []  # rows each node received, by shard index
        self.spill_root: Optional[str] = None  # where PSS workers spill (see dataset_fn)
        self._next_dataset_feed = 1
        self._served_feed: Optional[TrainFeed] = None
        self._rows = RowReader(self, train_mode)  # TensorFlowOnSpark's API
        #: the per-worker batch for a batch size given (see NodeContext.per_worker_batch)
        self.batch_for: Callable[[int], int] = lambda batch_size: batch_size

    @property
    def train_mode(self) -> Optional[bool]:
        """Training (True) or inference (False) rows for ``next_batch``; None: whichever the
        driver sends first."""
        return self._rows.train_mode

    @train_mode.setter
    def train_mode(self, value: Optional[bool]) -> None:
        self._rows.train_mode = value

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
        return self.dataset_of(self._next_train_feed(timeout), batch_size, label,
                               shuffle=shuffle, seed=seed)

    def dataset_of(self, feed: TrainFeed, batch_size: int, label: Optional[str] = None, *,
                   shuffle: Optional[bool] = None, seed: Optional[int] = None):
        """:meth:`dataset` of a given feed (a streaming micro-batch's too)."""
        check_batch_size(batch_size)
        batch_size = self.batch_for(batch_size)
        self._serving(feed, steps_per_epoch(feed.rows_per_node, batch_size))
        return share_dataset(self, feed, batch_size, label,
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
        check_batch_size(batch_size)
        served = self._served_feed
        if served is None:
            raise FeedDataError("call feed.dataset(...) first: validation_dataset() serves the "
                                "validation rows of the feed dataset() serves")
        if not served.has_validation:
            raise FeedDataError(f"feed {served.feed_id} came without validation rows: pass "
                                "validation_data= to cluster.train on the driver")
        feed = self.wait_for_feed(-served.feed_id, timeout)
        return share_dataset(self, feed, self.batch_for(batch_size), label, shuffle=False,
                             seed=None)

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
        return self.dataset_fn_of(self._next_train_feed(timeout), batch_size, label,
                                  shuffle=shuffle, seed=seed, shuffle_buffer=shuffle_buffer)

    def dataset_fn_of(self, feed: TrainFeed, batch_size: int, label: Optional[str] = None, *,
                      shuffle: Optional[bool] = None, seed: Optional[int] = None,
                      shuffle_buffer: int = 8192):
        """:meth:`dataset_fn` of a given feed (a streaming micro-batch's too)."""
        check_batch_size(batch_size)
        self._serving(feed, -(-sum(feed.rows_per_node) // batch_size))
        return pss_dataset_fn(self, feed, self.spill_root, batch_size, label,
                              self.shuffle if shuffle is None else shuffle, seed, shuffle_buffer)

    def _serving(self, feed: TrainFeed, steps: int) -> None:
        self._served_feed = feed
        self.steps_per_epoch, self.num_epochs = steps, feed.num_epochs
        self.rows_per_node = list(feed.rows_per_node)

    def _next_train_feed(self, timeout: Optional[float]) -> TrainFeed:
        feed = self.wait_for_feed(self._next_dataset_feed, timeout)
        self._next_dataset_feed += 1
        return feed

    # ------------------------------------------------------------ TensorFlowOnSpark API
    def next_batch(self, batch_size: int) -> List[Any]:
        """Up to ``batch_size`` rows; fewer (possibly none) only when the data has run out
        (see :mod:`tfspark._feed.next_batch`)."""
        return self._rows.next_batch(batch_size)

    def should_stop(self) -> bool:
        """True once no more data will come: the feed ended (or was terminated) and is used up."""
        return self._rows.should_stop()

    def batch_results(self, results: List[Any]) -> None:
        """Inference: hand back one result per row taken by ``next_batch``, in order."""
        self._rows.batch_results(results)

    def terminate(self) -> None:
        """Stop taking data: what is still being fed is received and dropped."""
        self._rows.terminate()


_feed: Optional[DataFeed] = None


def start(node_index: int, host: str, port: int, secret: bytes, spill_dir: str,
          spill_format: str = "arrow", spill_root: Optional[str] = None,
          batch_for: Optional[Callable[[int], int]] = None) -> None:
    """Start this node process's receiver (once, before ``main_fun`` or the TF server runs).

    ``spill_root``: where PSS workers spill (the same path on every node), for the chief's
    :meth:`DataFeed.dataset_fn`.
    """
    global _feed
    _feed = DataFeed(node_index)
    _feed.spill_root = spill_root
    if batch_for is not None:
        _feed.batch_for = batch_for
    FeedReceiver(_feed, host, port, secret, spill_dir, spill_format)


def await_feeds(feed_ids, timeout: float) -> None:
    """Until this node holds every feed of ``feed_ids`` (a PSS worker rejoining the training is
    sent its share again before its TF server starts: see tfspark._driver.attempt)."""
    for feed_id in feed_ids:
        _feed.wait_for_feed(feed_id, timeout)


def current_feed() -> DataFeed:
    """This process's feed, as it is set."""
    if _feed is None:
        raise FeedDataError("ctx.get_data_feed() and ctx.micro_batches() need TFCluster.run(..., "
                            "input_mode=InputMode.SPARK) and are available on the chief and "
                            "workers only")
    return _feed


def get_data_feed(train_mode: Optional[bool] = True, shuffle: bool = True,
                  seed: Optional[int] = None) -> DataFeed:
    """This process's feed (see :meth:`tfspark._node.context.NodeContext.get_data_feed`)."""
    feed = current_feed()
    feed.train_mode, feed.shuffle, feed.seed = train_mode, shuffle, seed
    return feed
