"""Worker-side input: TFRecord files (local or HDFS) as a parsed ``tf.data.Dataset``.

Runs inside a TF node's process (TensorFlow is imported there).  Files are listed and fetched
through :mod:`tfspark.fs`; HDFS files are downloaded to local disk ahead of the reader by a
background thread and deleted once read, so at most ``cycle_length + prefetch_files`` of them
are on disk. Every dataset here is a node's own share (:func:`node_share`, re-exported from
:mod:`tfspark._feed.shares`).
"""
from __future__ import annotations

import itertools
import logging
import os
import queue
import shutil
import tempfile
import threading
from collections import deque
from typing import IO, Deque, Dict, Iterator, List, Optional, Tuple

import numpy as np

from tfspark import fs
from tfspark._feed.arrow_columns import chunks
from tfspark._feed.shares import node_share  # noqa: F401 - public as tfspark.data.node_share
from tfspark._strategies.mwms import before_first_tf_op
from tfspark._tfrecord.codec import GZIP_MAGIC, TFRecordError, open_records
from tfspark._tfrecord.read import list_files

logger = logging.getLogger(__name__)

_DOWNLOAD_TIMEOUT = 3600.0  # seconds the reader waits for one file's download


def shard_of(ctx) -> Tuple[int, int]:
    """(shard_index, num_shards) of a TF node (see :meth:`~tfspark._strategies.base.StrategyBackend.data_nodes`)."""
    if ctx.shard_index is None:
        raise TFRecordError(f"a {ctx.job_name} node gets no share of the training data; "
                            "pass shard_index and num_shards to read files there")
    return ctx.shard_index, ctx.num_shards


def shard_files(files: List[str], shard_index: int, num_shards: int, path: str) -> List[str]:
    """File ``i`` goes to shard ``i % num_shards``; error if some shard would get none."""
    if not 0 <= shard_index < num_shards:
        raise TFRecordError(f"shard_index {shard_index} is not in [0, {num_shards})")
    if len(files) < num_shards:
        raise TFRecordError(f"{path} has {len(files)} TFRecord file(s) for {num_shards} "
                            "shards; every worker needs at least one (write more part files, "
                            "e.g. repartition the DataFrame before tfrecord.write)")
    return files[shard_index::num_shards]


def _compression(local_path: str, compression: str) -> str:
    if compression != "auto":
        return {"gzip": "GZIP", "none": "", None: ""}.get(compression, compression)
    with open(local_path, "rb") as f:
        return "GZIP" if f.read(2) == GZIP_MAGIC else ""


class _Prefetcher:
    """Downloads remote files in order into ``local_dir``, keeping at most ``slots`` on disk."""

    def __init__(self, urls: List[str], local_dir: str, slots: int):
        self.urls = urls
        self.local_dir = local_dir
        self.slots = threading.Semaphore(slots)
        self.ready: "queue.Queue" = queue.Queue()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="tfrecord-prefetch", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for i, url in enumerate(self.urls):
            while not self.slots.acquire(timeout=0.5):
                if self.stop.is_set():
                    return
            if self.stop.is_set():
                return
            local = os.path.join(self.local_dir, f"{i:06d}-{os.path.basename(url)}")
            try:
                fs.download(url, local, overwrite=True)
            except BaseException as e:  # handed to the reader
                self.ready.put((url, None, e))
                return
            self.ready.put((url, local, None))

    def next(self) -> Tuple[str, str]:
        try:
            url, local, error = self.ready.get(timeout=_DOWNLOAD_TIMEOUT)
        except queue.Empty:
            raise TFRecordError(f"no TFRecord file downloaded in {_DOWNLOAD_TIMEOUT:.0f}s; "
                                "check that the NameNode and DataNodes are reachable") from None
        if error is not None:
            raise error
        return url, local

    def done_with(self, local: str) -> None:
        try:
            os.remove(local)
        except OSError:
            pass
        self.slots.release()


def _interleaved_remote_records(urls: List[str], cycle_length: int, prefetch_files: int,
                                local_dir: Optional[str]) -> Iterator[List[bytes]]:
    """Chunks of records from remote files, downloaded ahead of the reader and read
    ``cycle_length`` files at a time, round-robin; each file is deleted once fully read."""
    staging = tempfile.mkdtemp(prefix="tfspark-tfrecord-", dir=local_dir)
    prefetcher = _Prefetcher(urls, staging, cycle_length + max(0, prefetch_files))
    active: Deque[Tuple[str, IO[bytes], Iterator[List[bytes]]]] = deque()
    waiting = len(urls)
    try:
        while active or waiting:
            while waiting and len(active) < cycle_length:
                _, local = prefetcher.next()
                handle = open(local, "rb")
                active.append((local, handle, iter(chunks(open_records(handle, local), 512))))
                waiting -= 1
            local, handle, pending = active.popleft()
            chunk = next(pending, None)
            if chunk is None:  # this file is read: free its slot
                handle.close()
                prefetcher.done_with(local)
                continue
            active.append((local, handle, pending))
            yield chunk
    finally:
        for _, handle, _ in active:
            handle.close()
        prefetcher.stop.set()
        shutil.rmtree(staging, ignore_errors=True)


def file_order(files: List[str], shuffle: bool, seed: int, epoch: int) -> List[str]:
    """The order in which a node reads its files in ``epoch``: as listed, or a permutation
    drawn from ``(seed, epoch)`` -- fresh every epoch, as ``tf.data.Dataset.list_files`` does."""
    if not shuffle:
        return list(files)
    return [files[i] for i in np.random.default_rng([seed, epoch]).permutation(len(files))]


def tfrecord_dataset(path: str, features: Dict[str, object], batch_size: Optional[int] = None,
                     ctx=None, shard_index: Optional[int] = None,
                     num_shards: Optional[int] = None, compression: str = "auto",
                     prefetch_files: int = 1, local_dir: Optional[str] = None, *,
                     shuffle_files: bool = True, seed: Optional[int] = None,
                     cycle_length: int = 4):
    """This node's share of the TFRecord files under ``path``, parsed.

    Parameters
    ----------
    path : str
        A directory, file or glob: local, ``file://``, ``hdfs://nn:port/...``, ``hdfs:///...``
        or relative (see :func:`tfspark.fs.resolve`; with ``ctx``, ``ctx.absolute_path``).
    features : dict
        ``{name: tf.io.FixedLenFeature | tf.io.VarLenFeature | ...}`` for ``tf.io.parse_example``.
    batch_size : int, optional
        Batch the records then parse whole batches (faster); None parses records one by one.
        A **per-worker batch**, like every batch of a node's share (:mod:`tfspark._feed.shares`);
        with ``ctx``, on a cluster running on fewer workers than it started with,
        ``ctx.per_worker_batch(batch_size)`` (the cluster's ``batch_policy``).
    ctx : tfspark.NodeContext, optional
        Takes ``shard_index`` and ``num_shards`` from it (``ctx.shard_index``: the chief and
        workers under MultiWorkerMirroredStrategy; the workers under ParameterServerStrategy).
    shard_index, num_shards : int, optional
        Explicit sharding (default: from ``ctx``, else one shard: every file).
    compression : {"auto", "gzip", "none"}
        ``"auto"`` looks at each file's first bytes.
    prefetch_files : int
        HDFS files downloaded ahead of the ones being read.
    local_dir : str, optional
        Where downloads go (default: the system temp dir).
    shuffle_files, seed : read this node's files in a fresh random order every epoch (each
        iteration of the dataset), reproducible from ``seed``; ``shuffle_files=False`` reads
        them in path order. Add a record-level ``.shuffle(buffer)`` for order within files.
    cycle_length : int
        Files read at once, records interleaved between them.

    Returns
    -------
    tf.data.Dataset
        Parsed feature dicts (batched when ``batch_size`` is given), marked as this node's own
        share: under MultiWorkerMirroredStrategy, ``model.fit`` takes whole batches of it on
        this node instead of splitting them over the workers. File ``i`` (in path order) is
        read by shard ``i % num_shards``. Each iteration reads every record of the shard once,
        so ``model.fit(dataset, epochs=n)`` without ``repeat()``/``steps_per_epoch`` trains on
        each record exactly once per epoch, nodes with smaller shards idling on empty batches.
    """
    import tensorflow as tf

    path = ctx.absolute_path(path) if ctx is not None else fs.resolve(path)
    if batch_size is not None and ctx is not None:
        batch_size = ctx.per_worker_batch(batch_size)  # on fewer workers: see its docstring
    if shard_index is None and num_shards is None:
        shard_index, num_shards = shard_of(ctx) if ctx is not None else (0, 1)
    elif shard_index is None or num_shards is None:
        raise TFRecordError("pass both shard_index and num_shards, or neither")
    if cycle_length < 1:
        raise TFRecordError(f"cycle_length must be >= 1, got {cycle_length}")
    urls = [url for url, _ in list_files(path)]
    mine = shard_files(urls, shard_index, num_shards, path)
    before_first_tf_op()
    logger.info("shard %d/%d reads %d of %d TFRecord files under %s", shard_index, num_shards,
                len(mine), len(urls), path)
    seed = int(np.random.SeedSequence().entropy % (1 << 63)) if seed is None else int(seed)
    cycle = min(cycle_length, len(mine))

    if all(fs.split_url(u)[0] in ("", "file") for u in mine):
        local = [fs.LOCAL.native(u) for u in mine]
        files = tf.data.Dataset.from_tensor_slices(
            (local, [_compression(p, compression) for p in local]))
        if shuffle_files:
            files = files.shuffle(len(local), seed=seed, reshuffle_each_iteration=True)
        records = files.interleave(
            lambda p, c: tf.data.TFRecordDataset(p, compression_type=c), cycle_length=cycle,
            block_length=16, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    else:
        # Downloaded files are read here, in Python, so each one is deleted only once fully
        # read (tf.data may run ahead of a file-name generator and open a deleted file).
        epochs = itertools.count()

        def generate():
            order = file_order(mine, shuffle_files, seed, next(epochs))
            yield from _interleaved_remote_records(order, cycle, prefetch_files, local_dir)

        records = tf.data.Dataset.from_generator(
            generate, output_signature=tf.TensorSpec([None], tf.string)).unbatch()
    records = node_share(records, batch_size)
    if batch_size:
        return records.batch(batch_size).map(lambda r: tf.io.parse_example(r, features))
    return records.map(lambda r: tf.io.parse_single_example(r, features))


def stage_shard(path: str, shard_index: int, num_shards: int, local_dir: str) -> List[str]:
    """Copy shard ``shard_index`` of the TFRecord files under ``path`` into ``local_dir``.

    For ParameterServerStrategy workers, whose ``dataset_fn`` runs as a graph and so can only
    read local files: tfspark calls this before the worker's server starts. Returns the local
    paths, which keep the files' names.
    """
    urls = [url for url, _ in list_files(path)]
    mine = shard_files(urls, shard_index, num_shards, path)
    before_first_tf_op()
    os.makedirs(local_dir, exist_ok=True)
    staged = []
    for url in mine:
        local = os.path.join(local_dir, os.path.basename(fs.split_url(url)[2]))
        fs.download(url, local, overwrite=True)
        staged.append(local)
    logger.info("staged %d of %d TFRecord files under %s into %s", len(staged), len(urls), path,
                local_dir)
    return staged
