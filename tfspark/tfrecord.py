"""DataFrame <-> TFRecord files, on HDFS or local disk, without TensorFlow on the executors.

The public face of TFRecord I/O. Owns writing: the per-task commit of part files and the
job-level commit (``_SUCCESS``, modes). Reading is :mod:`tfspark._tfrecord.read`'s (``read``,
``list_files`` and ``infer_schema`` are re-exported here), the type mapping both ways
:mod:`tfspark._tfrecord.schema`'s, the wire format :mod:`tfspark._tfrecord.codec`'s; every file
operation goes through :mod:`tfspark.fs` (the only package that talks to HDFS).

::

    from tfspark import tfrecord
    tfrecord.write(df, "hdfs://nn:8020/data/train", mode="overwrite", compression="gzip")
    df = tfrecord.read(spark, "hdfs://nn:8020/data/train")

Writing: Spark type -> Feature
==============================

=========================================================  =====================================
Spark column type                                          written as
=========================================================  =====================================
``boolean``, ``byte``, ``short``, ``int``, ``long``        ``int64_list`` of one value (bool: 0/1)
``float``, ``double``                                      ``float_list`` of one value (float32)
``string`` (UTF-8), ``binary``                             ``bytes_list`` of one value
``array<T>`` of any of the above                           the same list kind, all the elements
``pyspark.ml.linalg`` ``Vector`` (dense or sparse)         ``float_list`` of the dense values
``array<array<T>>`` (``SequenceExample`` only)             a ``FeatureList`` in ``feature_lists``
null value                                                 feature omitted from that record
``struct``, ``map``, dates, decimals, other nestings       :class:`TFRecordError` naming the column
=========================================================  =====================================

Null *elements* inside an array cannot be represented and raise :class:`TFRecordError`.
``record_type="ByteArray"`` writes the single binary column's values as raw records.

Reading: Feature -> Spark type
==============================

Without ``schema`` the first 1,000 records (:data:`tfspark._tfrecord.read.INFER_RECORDS`; from
the first files, in path order) are decoded and each feature becomes

* ``int64_list`` -> ``long``; ``float_list`` -> ``float``; ``bytes_list`` -> ``string`` when every
  sampled value is valid UTF-8, otherwise ``binary``;
* a scalar of that type when every sampled list has exactly one value, else ``array<type>``
  (``SequenceExample`` feature lists: ``array<array<type>>``);
* a feature missing from a record reads as null (a scalar's empty list too).

A ``schema`` (StructType) given by the caller wins: integer, boolean, float, double, string and
binary columns and arrays of them are read from the matching list kind (a missing feature is
null); a scalar column whose feature has several values raises :class:`TFRecordError`.
Hive-style ``col=value`` subdirectories become columns (``long`` if every value is an integer,
else ``string``).  ``record_type="ByteArray"`` reads one ``byte_array`` binary column.

Files and commit protocol
=========================

A write produces ``part-NNNNN-<uuid>.tfrecord[.gz]`` (NNNNN: the Spark partition; one uuid per
write) plus ``_SUCCESS``, written last.  Each task encodes its partition with
:func:`tfspark.fs.atomic_output`: to a hidden sibling (local) or a local staging file uploaded
to a hidden HDFS name, renamed to its final name only when the whole partition is encoded.  A
failed attempt leaves nothing; a retried attempt writes the same names, replacing, never
duplicating.  ``mode="error"`` and ``"overwrite"`` write into a hidden sibling directory that is
renamed into place when every task succeeded (``overwrite`` moves the old directory aside
first and deletes it afterwards); ``"append"`` adds part files with a new uuid.
"""
from __future__ import annotations

import functools
import io
import os
import posixpath
import uuid
from contextlib import ExitStack
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import pyarrow as pa

from tfspark import fs
from tfspark._tfrecord.codec import (BYTES, ColumnSpec, TFRecordCorruptError, TFRecordError,
                                     encode_examples, frame_records)
from tfspark._tfrecord.read import infer_schema, list_files, pack_files, read
from tfspark._tfrecord.schema import (RECORD_TYPES, column_specs, is_vector, partition_dir,
                                      spark_kind)
from tfspark.errors import FileSystemError

__all__ = ["write", "read", "list_files", "infer_schema", "column_specs", "pack_files",
           "TFRecordError", "TFRecordCorruptError"]

MODES = ("error", "overwrite", "append")
SUCCESS = "_SUCCESS"
_ROWS_PER_CHUNK = 4096  # rows encoded at once (bounds the encoder's memory)


# ---------------------------------------------------------------------------------------------
# task side: writing


class _PartWriter:
    """One part file being written: a local stream, compressed or not."""

    def __init__(self, stack: ExitStack, final_url: str, compression: Optional[str]):
        self.url = final_url
        local = stack.enter_context(fs.atomic_output(final_url, overwrite=True))
        self.raw = io.open(local, "wb")
        stack.callback(self.raw.close)
        if compression == "gzip":
            import gzip
            self.out = gzip.GzipFile(filename="", mode="wb", fileobj=self.raw, mtime=0)
        else:
            self.out = self.raw
        self.records = 0

    def write(self, data, count: int) -> None:
        self.out.write(data)
        self.records += count

    def close(self) -> None:
        if self.out is not self.raw:
            self.out.close()
        self.raw.close()


def _write_task(batches: Iterator[pa.RecordBatch], target: str, job_id: str,
                specs: List[ColumnSpec], record_type: str, compression: Optional[str],
                partition_by: List[str], conf_dir: Optional[str],
                tokens: "fs.credentials.HandedTokens" = fs.credentials.NO_TOKENS
                ) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: encode this partition and publish its part file(s)."""
    with tokens.used():
        yield from _write_partition(batches, target, job_id, specs, record_type, compression,
                                    partition_by, conf_dir)


def _write_partition(batches: Iterator[pa.RecordBatch], target: str, job_id: str,
                     specs: List[ColumnSpec], record_type: str, compression: Optional[str],
                     partition_by: List[str], conf_dir: Optional[str]
                     ) -> Iterator[pa.RecordBatch]:
    from pyspark import TaskContext
    fs.use_hadoop_conf(conf_dir)
    task = TaskContext.get()
    part = task.partitionId() if task is not None else 0
    name = f"part-{part:05d}-{job_id}.tfrecord" + (".gz" if compression == "gzip" else "")
    writers: Dict[tuple, _PartWriter] = {}
    with ExitStack() as stack:
        for batch in batches:
            for start in range(0, batch.num_rows, _ROWS_PER_CHUNK):
                chunk = batch.slice(start, _ROWS_PER_CHUNK)
                for key, rows in _split(chunk, partition_by):
                    writer = writers.get(key)
                    if writer is None:
                        sub = partition_dir(partition_by, key)
                        url = fs.join(target, sub, name) if sub else fs.join(target, name)
                        writer = writers[key] = _PartWriter(stack, url, compression)
                    if record_type == "ByteArray":
                        col = rows.column(specs[0].name)
                        if col.null_count:
                            raise TFRecordError(f"column {specs[0].name!r} has nulls; a "
                                                "ByteArray record cannot be null")
                        records = col
                    else:
                        records = encode_examples(rows, specs, record_type)
                    writer.write(frame_records(records), rows.num_rows)
        for writer in writers.values():
            writer.close()
    # the stack has published every file (renamed/uploaded into place) by now
    urls = [w.url for w in writers.values()]
    counts = [w.records for w in writers.values()]
    if urls:
        yield pa.record_batch({"path": pa.array(urls, pa.string()),
                               "records": pa.array(counts, pa.int64())})


def _split(batch: pa.RecordBatch, keys: List[str]) -> Iterator[Tuple[tuple, pa.RecordBatch]]:
    """(partition values, rows without the partition columns) for each distinct key."""
    if not keys:
        yield (), batch
        return
    values = [batch.column(k).to_pylist() for k in keys]
    groups: Dict[tuple, List[int]] = {}
    for i, key in enumerate(zip(*values)):
        groups.setdefault(key, []).append(i)
    rest = batch.drop_columns(keys) if hasattr(batch, "drop_columns") else pa.RecordBatch.\
        from_arrays([batch.column(n) for n in batch.schema.names if n not in keys],
                    [n for n in batch.schema.names if n not in keys])
    for key, idx in groups.items():
        yield key, rest.take(pa.array(idx, pa.int64()))


# ---------------------------------------------------------------------------------------------
# driver side: writing


def _callback_hosts(df) -> Optional[tuple]:
    from tfspark._driver.spark_backend import task_callback_hosts
    return task_callback_hosts(df.sparkSession)


def write(df, path: str, mode: str = "error", compression: Optional[str] = None,
          partition_by: Union[None, str, Sequence[str]] = None,
          record_type: str = "Example") -> List[str]:
    """Write a DataFrame as TFRecord files under the directory ``path`` (local or ``hdfs://``).

    Parameters
    ----------
    df : pyspark.sql.DataFrame
        The rows to write; column types as in this module's table.
    path : str
        Output directory: ``hdfs://...``, ``file://...`` or a plain path (resolved against
        ``fs.defaultFS`` of $HADOOP_CONF_DIR, else the local working directory).
    mode : {"error", "overwrite", "append"}
        What to do when ``path`` exists: fail, replace it (once the new data is complete), or add
        part files.
    compression : {None, "gzip"}
        Gzip each part file (``.tfrecord.gz``; TF reads it with ``compression_type="GZIP"``).
    partition_by : str or list of str, optional
        Columns written as Hive-style ``col=value/`` subdirectories instead of features.
    record_type : {"Example", "SequenceExample", "ByteArray"}
        ``ByteArray`` needs exactly one binary column, written as the raw records.

    Returns
    -------
    list of str
        URLs of the part files written (in their final place).

    Raises
    ------
    TFRecordError
        A column cannot be mapped, ``path`` exists with ``mode="error"``, or an argument is bad.
    """
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    if mode not in MODES:
        raise TFRecordError(f"mode must be one of {MODES}, not {mode!r}")
    if record_type not in RECORD_TYPES:
        raise TFRecordError(f"record_type must be one of {RECORD_TYPES}, not {record_type!r}")
    if compression not in (None, "gzip"):
        raise TFRecordError(f"compression must be None or 'gzip', not {compression!r}")
    keys = [partition_by] if isinstance(partition_by, str) else list(partition_by or [])
    for key in keys:
        if key not in df.columns:
            raise TFRecordError(f"partition_by column {key!r} is not in the DataFrame "
                                f"(columns: {df.columns})")
        if spark_kind(df.schema[key].dataType) is None:
            raise TFRecordError(f"partition_by column {key!r} must be a scalar (boolean, "
                                f"integer, float, string), not "
                                f"{df.schema[key].dataType.simpleString()}")
    if record_type == "ByteArray":
        data_cols = [f for f in df.schema.fields if f.name not in keys]
        if len(data_cols) != 1 or not isinstance(data_cols[0].dataType, T.BinaryType):
            raise TFRecordError("record_type='ByteArray' needs exactly one binary column "
                                f"(besides partition_by), got {[f.name for f in data_cols]}")
        specs = [ColumnSpec(data_cols[0].name, BYTES, 0)]
    else:
        specs = column_specs(df.schema, record_type, exclude=keys)
    vectors = [f.name for f in df.schema.fields if is_vector(f.dataType)]
    if vectors:
        df = df.select(*[F.when(F.col(c).isNotNull(), vector_to_array(F.col(c), "float32"))
                         .alias(c) if c in vectors else F.col(c) for c in df.columns])

    url = fs.resolve(path)
    filesystem = fs.get_filesystem(url)
    exists = filesystem.exists(url)
    if exists and mode == "error":
        raise TFRecordError(f"{url} already exists; pass mode='overwrite' to replace it or "
                            "mode='append' to add files to it")
    if exists and not filesystem.isdir(url):
        raise TFRecordError(f"{url} exists and is not a directory")
    job_id = uuid.uuid4().hex
    parent, name = posixpath.split(url.rstrip("/"))
    target = url if mode == "append" else f"{parent}/.{name}._tfspark-{job_id[:12]}"
    filesystem.mkdirs(target)

    task = functools.partial(_write_task, target=target, job_id=job_id, specs=specs,
                             record_type=record_type, compression=compression,
                             partition_by=keys, conf_dir=os.environ.get("HADOOP_CONF_DIR"),
                             tokens=fs.handed_tokens([url], _callback_hosts(df)))
    try:
        rows = df.mapInArrow(task, "path string, records long").collect()
        filesystem.write(fs.join(target, SUCCESS), b"", overwrite=True)
        if mode != "append":
            _swap_into_place(filesystem, target, url, parent, name, job_id)
    except BaseException:
        if mode != "append":
            filesystem.delete(target, recursive=True, missing_ok=True)
        raise
    if mode == "append":
        return [r.path for r in rows]
    return [url + r.path[len(target):] for r in rows]


def _swap_into_place(filesystem, staged: str, url: str, parent: str, name: str,
                     job_id: str) -> None:
    old = f"{parent}/.{name}._old-{job_id[:12]}"
    moved = False
    if filesystem.exists(url):
        filesystem.rename(url, old)  # only "overwrite" gets here (error mode checked earlier)
        moved = True
    try:
        filesystem.rename(staged, url)
    except FileSystemError as e:
        if moved:
            filesystem.rename(old, url)
        if getattr(e, "reason", "") == "exists":
            raise TFRecordError(f"{url} appeared while writing; the new files are not "
                                "published (use mode='overwrite')") from e
        raise
    if moved:
        filesystem.delete(old, recursive=True, missing_ok=True)
