"""Worker-side input: TFRecord files (local or HDFS) as a parsed ``tf.data.Dataset``.

Runs inside a TF node's process (TensorFlow is imported there).  Files are listed and fetched
through :mod:`tfspark.fs`; HDFS files are downloaded to local disk one ahead of the reader by a
background thread and deleted once read, so at most ``1 + prefetch_files`` of them are on disk.
"""
from __future__ import annotations

import logging
import os
import queue
import shutil
import tempfile
import threading
from typing import Dict, Iterator, List, Optional, Tuple

from tfspark import fs
from tfspark.tfrecord import list_files
from tfspark.tfrecord_codec import GZIP_MAGIC, TFRecordError, open_records

logger = logging.getLogger(__name__)

_DOWNLOAD_TIMEOUT = 3600.0  # seconds the reader waits for one file's download


def shard_of(ctx) -> Tuple[int, int]:
    """(shard_index, num_shards) of a TF node: its index among the chief and the workers."""
    spec = ctx.cluster_spec or {}
    has_chief = "chief" in spec
    if ctx.job_name == "chief":
        index = 0
    elif ctx.job_name == "worker":
        index = ctx.task_index + (1 if has_chief else 0)
    else:
        raise TFRecordError(f"a {ctx.job_name} node does not train, so it has no input shard; "
                            "pass shard_index and num_shards to read files there")
    return index, ctx.num_workers


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


def _local_files(urls: List[str], compression: str, prefetch_files: int,
                 local_dir: Optional[str]) -> Iterator[Tuple[str, str]]:
    """(local path, compression type) of each file, downloading remote ones ahead."""
    if all(fs.split_url(u)[0] in ("", "file") for u in urls):
        for url in urls:
            local = fs.LOCAL.native(url)
            yield local, _compression(local, compression)
        return
    staging = tempfile.mkdtemp(prefix="tfspark-tfrecord-", dir=local_dir)
    prefetcher = _Prefetcher(urls, staging, 1 + max(0, prefetch_files))
    try:
        for _ in urls:
            url, local = prefetcher.next()
            try:
                yield local, _compression(local, compression)
            finally:  # the reader asked for the next file (or stopped): this one is consumed
                prefetcher.done_with(local)
    finally:
        prefetcher.stop.set()
        shutil.rmtree(staging, ignore_errors=True)


def tfrecord_dataset(path: str, features: Dict[str, object], batch_size: Optional[int] = None,
                     ctx=None, shard_index: Optional[int] = None,
                     num_shards: Optional[int] = None, compression: str = "auto",
                     prefetch_files: int = 1, local_dir: Optional[str] = None):
    """This worker's share of the TFRecord files under ``path``, parsed.

    Parameters
    ----------
    path : str
        A directory, file or glob, local or ``hdfs://`` (relative paths resolve against
        ``ctx.absolute_path`` when ``ctx`` is given).
    features : dict
        ``{name: tf.io.FixedLenFeature | tf.io.VarLenFeature | ...}`` for ``tf.io.parse_example``.
    batch_size : int, optional
        Batch the records then parse whole batches (faster); None parses records one by one.
    ctx : tfspark.NodeContext, optional
        Takes ``num_shards`` (``ctx.num_workers``) and ``shard_index`` (this node's index among
        the chief and workers; parameter servers do not count) from it.
    shard_index, num_shards : int, optional
        Explicit sharding (default: from ``ctx``, else one shard: every file).
    compression : {"auto", "gzip", "none"}
        ``"auto"`` looks at each file's first bytes.
    prefetch_files : int
        HDFS files downloaded ahead of the one being read.
    local_dir : str, optional
        Where downloads go (default: the system temp dir).

    Returns
    -------
    tf.data.Dataset
        Parsed feature dicts (batched when ``batch_size`` is given).  File ``i`` (in path
        order) is read by shard ``i % num_shards``.
    """
    import tensorflow as tf

    if ctx is not None and not fs.split_url(path)[0]:
        path = ctx.absolute_path(path)
    if shard_index is None and num_shards is None:
        shard_index, num_shards = shard_of(ctx) if ctx is not None else (0, 1)
    elif shard_index is None or num_shards is None:
        raise TFRecordError("pass both shard_index and num_shards, or neither")
    urls = [url for url, _ in list_files(path)]
    mine = shard_files(urls, shard_index, num_shards, path)
    logger.info("shard %d/%d reads %d of %d TFRecord files under %s", shard_index, num_shards,
                len(mine), len(urls), path)

    if all(fs.split_url(u)[0] in ("", "file") for u in mine):
        local = [fs.LOCAL.native(u) for u in mine]
        files = tf.data.Dataset.from_tensor_slices(
            (local, [_compression(p, compression) for p in local]))
        records = files.flat_map(lambda p, c: tf.data.TFRecordDataset(p, compression_type=c))
    else:
        # Downloaded files are read here, in Python, so each one is deleted only once fully
        # read (tf.data may run ahead of a file-name generator and open a deleted file).
        def generate():
            for local_path, _ in _local_files(mine, compression, prefetch_files, local_dir):
                with open(local_path, "rb") as f:
                    chunk = []
                    for record in open_records(f, local_path):
                        chunk.append(record)
                        if len(chunk) == 512:
                            yield chunk
                            chunk = []
                    if chunk:
                        yield chunk

        records = tf.data.Dataset.from_generator(
            generate, output_signature=tf.TensorSpec([None], tf.string)).unbatch()
    options = tf.data.Options()  # already this node's shard: a strategy must not re-shard it
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    records = records.with_options(options)
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
    os.makedirs(local_dir, exist_ok=True)
    staged = []
    for url in mine:
        local = os.path.join(local_dir, os.path.basename(fs.split_url(url)[2]))
        fs.download(url, local, overwrite=True)
        staged.append(local)
    logger.info("staged %d of %d TFRecord files under %s into %s", len(staged), len(urls), path,
                local_dir)
    return staged
