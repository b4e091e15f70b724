"""DataFrame <-> TFRecord files, on HDFS or local disk, without TensorFlow on the executors.

Owns the schema mapping, the per-task commit of part files and the job-level commit
(``_SUCCESS``, modes).  The wire format lives in :mod:`tfspark.tfrecord_codec`; every file
operation goes through :mod:`tfspark.fs` (the only module that talks to HDFS).

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

Without ``schema`` the first :data:`INFER_RECORDS` records (from the first files, in path
order) are decoded and each feature becomes

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
import re
import uuid
from contextlib import ExitStack
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union
from urllib.parse import quote, unquote

import numpy as np
import pyarrow as pa

from tfspark import fs
from tfspark.errors import FileSystemError
from tfspark.tfrecord_codec import (BYTES, FLOAT, INT64, ColumnSpec, TFRecordCorruptError,
                                    TFRecordError, decode_example, decode_sequence_example,
                                    decode_uniform_examples,
                                    encode_examples, frame_records, open_records)

__all__ = ["write", "read", "list_files", "TFRecordError", "TFRecordCorruptError"]

RECORD_TYPES = ("Example", "SequenceExample", "ByteArray")
MODES = ("error", "overwrite", "append")
INFER_RECORDS = 1000
SUCCESS = "_SUCCESS"
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
_ROWS_PER_CHUNK = 4096  # rows encoded at once (bounds the encoder's memory)


# ---------------------------------------------------------------------------------------------
# schema mapping (driver side, pure)


def _spark_kind(dt) -> Optional[str]:
    from pyspark.sql import types as T
    if isinstance(dt, (T.BooleanType, T.ByteType, T.ShortType, T.IntegerType, T.LongType)):
        return INT64
    if isinstance(dt, (T.FloatType, T.DoubleType)):
        return FLOAT
    if isinstance(dt, (T.StringType, T.BinaryType)):
        return BYTES
    return None


def _is_vector(dt) -> bool:
    try:
        from pyspark.ml.linalg import VectorUDT
    except ImportError:  # pragma: no cover - pyspark always has ml
        return False
    return isinstance(dt, VectorUDT)


def column_specs(schema, record_type: str = "Example",
                 exclude: Sequence[str] = ()) -> List[ColumnSpec]:
    """How each column of a Spark ``schema`` is encoded; :class:`TFRecordError` if it cannot be.

    Vector columns count as ``array<float>`` (the caller converts them).
    """
    from pyspark.sql import types as T
    specs = []
    for field in schema.fields:
        if field.name in exclude:
            continue
        dt = field.dataType
        depth = 0
        if _is_vector(dt):
            specs.append(ColumnSpec(field.name, FLOAT, 1))
            continue
        while isinstance(dt, T.ArrayType) and depth < 2:
            dt, depth = dt.elementType, depth + 1
        kind = _spark_kind(dt)
        if kind is None or (depth == 2 and record_type != "SequenceExample"):
            hint = (" (array<array<...>> columns need record_type='SequenceExample')"
                    if kind is not None else "")
            raise TFRecordError(
                f"column {field.name!r} of type {field.dataType.simpleString()} cannot be "
                f"written to a TFRecord {record_type}{hint}; supported: boolean, integer types,"
                " float, double, string, binary, arrays of them and ml Vectors. Flatten "
                "structs/maps into separate columns or serialize them to binary first")
        specs.append(ColumnSpec(field.name, kind, depth))
    return specs


def _spark_type(kind: str, depth: int, utf8: bool):
    from pyspark.sql import types as T
    base = {INT64: T.LongType(), FLOAT: T.FloatType()}.get(
        kind, T.StringType() if utf8 else T.BinaryType())
    for _ in range(depth):
        base = T.ArrayType(base, containsNull=False)
    return base


class _Inference:
    """Accumulates what sampled records say about each feature."""

    def __init__(self):
        self.kinds: Dict[str, str] = {}
        self.order: List[str] = []
        self.scalar: Dict[str, bool] = {}
        self.utf8: Dict[str, bool] = {}
        self.depth2: Dict[str, bool] = {}

    def add(self, name: str, kind: Optional[str], values, nested: bool = False) -> None:
        if name not in self.kinds or self.kinds[name] is None:
            if name not in self.kinds:
                self.order.append(name)
            self.kinds[name] = kind
            self.scalar.setdefault(name, True)
            self.utf8.setdefault(name, True)
            self.depth2[name] = self.depth2.get(name, False) or nested
        elif kind is not None and self.kinds[name] != kind:
            raise TFRecordError(f"feature {name!r} is a {self.kinds[name]} list in some records "
                                f"and a {kind} list in others; pass a schema to read it")
        steps = values if nested else [values]
        if nested or any(len(v) != 1 for v in steps):
            self.scalar[name] = False
        if kind == BYTES and self.utf8[name]:
            for step in steps:
                for v in step:
                    try:
                        v.decode("utf-8")
                    except UnicodeDecodeError:
                        self.utf8[name] = False
                        break

    def schema(self):
        from pyspark.sql import types as T
        fields = []
        for name in self.order:
            depth = 2 if self.depth2[name] else (0 if self.scalar[name] else 1)
            fields.append(T.StructField(name, _spark_type(self.kinds[name] or BYTES, depth,
                                                          self.utf8[name]), True))
        return T.StructType(fields)


# ---------------------------------------------------------------------------------------------
# paths


def _is_data_file(name: str) -> bool:
    return not name.startswith(("_", "."))


def _resolve(path: str) -> str:
    return fs.resolve(path)


def list_files(path: str) -> List[Tuple[str, Dict[str, str]]]:
    """TFRecord files under ``path``: (URL, Hive partition values) pairs, sorted by URL.

    ``path`` may be a file, a directory (searched recursively; names starting with ``_`` or
    ``.`` are skipped) or a glob pattern.
    """
    return [(url, parts) for url, parts, _ in _listed(path)]


def _listed(path: str) -> List[Tuple[str, Dict[str, str], int]]:
    """:func:`list_files` with each file's size in bytes."""
    url = _resolve(path)
    roots = fs.glob(url) if any(c in url for c in "*?[") else [url]
    found: List[Tuple[str, Dict[str, str], int]] = []
    for root in roots:
        filesystem = fs.get_filesystem(root)
        st = filesystem.status(root)
        if not st.is_dir:
            found.append((st.path, {}, st.size))
            continue
        for rel, dirs, files in filesystem.walk_status(root):
            if rel and any(not _is_data_file(p) for p in rel.split("/")):
                continue
            parts = {}
            for segment in rel.split("/") if rel else []:
                if "=" in segment:
                    key, value = segment.split("=", 1)
                    parts[unquote(key)] = None if value == HIVE_NULL else unquote(value)
            for f in files:
                if _is_data_file(f.name):
                    found.append((fs.join(root, rel, f.name) if rel else fs.join(root, f.name),
                                  parts, f.size))
    return sorted(found, key=lambda item: item[0])


def pack_files(sizes: Sequence[int], parallelism: int, max_bytes: int = 128 << 20,
               open_cost: int = 4 << 20) -> List[List[int]]:
    """Files (by index, in path order) grouped into read partitions, the way Spark packs files:
    each file counts its size plus ``open_cost``; a partition takes files until the next would
    pass ``min(max_bytes, max(open_cost, all counted bytes / parallelism))``. Small files share
    a partition (a task per tiny file costs more than reading it); big ones get their own."""
    counted = [size + open_cost for size in sizes]
    limit = min(max_bytes, max(open_cost, sum(counted) // max(1, parallelism)))
    groups: List[List[int]] = []
    filled = 0
    for index, size in enumerate(counted):
        if groups and filled + size <= limit:
            groups[-1].append(index)
            filled += size
        else:
            groups.append([index])
            filled = size
    return groups


def _partition_dir(keys: Sequence[str], values: Sequence) -> str:
    segments = []
    for key, value in zip(keys, values):
        text = HIVE_NULL if value is None else (
            ("true" if value else "false") if isinstance(value, bool) else str(value))
        encoded = quote(text, safe="") if value is not None else text
        segments.append(f"{quote(key, safe='')}={encoded}")
    return "/".join(segments)


# ---------------------------------------------------------------------------------------------
# task side: writing


def _use_hadoop_conf(conf_dir: Optional[str]) -> None:
    """Give an executor without $HADOOP_CONF_DIR the driver's (when that folder exists here)."""
    if conf_dir and not os.environ.get("HADOOP_CONF_DIR") and os.path.isdir(conf_dir):
        os.environ["HADOOP_CONF_DIR"] = conf_dir


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
                partition_by: List[str], conf_dir: Optional[str]) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: encode this partition and publish its part file(s)."""
    from pyspark import TaskContext
    _use_hadoop_conf(conf_dir)
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
                        sub = _partition_dir(partition_by, key)
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
        if _spark_kind(df.schema[key].dataType) is None:
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
    vectors = [f.name for f in df.schema.fields if _is_vector(f.dataType)]
    if vectors:
        df = df.select(*[F.when(F.col(c).isNotNull(), vector_to_array(F.col(c), "float32"))
                         .alias(c) if c in vectors else F.col(c) for c in df.columns])

    url = _resolve(path)
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
                             partition_by=keys, conf_dir=os.environ.get("HADOOP_CONF_DIR"))
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


# ---------------------------------------------------------------------------------------------
# reading


def _records_of(url: str) -> Iterator[bytes]:
    with fs.open(url, "rb") as raw:
        yield from open_records(raw, url)


def infer_schema(files: Sequence[str], record_type: str = "Example",
                 max_records: int = INFER_RECORDS):
    """Spark schema of the first ``max_records`` records of ``files`` (see the module doc)."""
    from pyspark.sql import types as T
    if record_type == "ByteArray":
        return T.StructType([T.StructField("byte_array", T.BinaryType(), True)])
    seen = _Inference()
    count = 0
    for url in files:
        for record in _records_of(url):
            try:
                if record_type == "Example":
                    for key, (kind, values) in decode_example(record).items():
                        seen.add(key, kind, values)
                else:
                    context, lists = decode_sequence_example(record)
                    for key, (kind, values) in context.items():
                        seen.add(key, kind, values)
                    for key, (kind, steps) in lists.items():
                        seen.add(key, kind, steps, nested=True)
            except (ValueError, IndexError, UnicodeDecodeError) as e:
                raise TFRecordError(f"{url}: record {count} is not a valid {record_type}: "
                                    f"{e}") from e
            count += 1
            if count >= max_records:
                return seen.schema()
    return seen.schema()


def _column_plan(schema) -> List[Tuple[str, str, int]]:
    """(name, kind, depth) for each column of a read schema; TFRecordError if unsupported."""
    from pyspark.sql import types as T
    plan = []
    for field in schema.fields:
        dt, depth = field.dataType, 0
        while isinstance(dt, T.ArrayType) and depth < 2:
            dt, depth = dt.elementType, depth + 1
        kind = _spark_kind(dt)
        if kind is None:
            raise TFRecordError(f"schema column {field.name!r} of type "
                                f"{field.dataType.simpleString()} cannot be read from TFRecords"
                                "; use boolean, integer, float, double, string, binary or "
                                "arrays of them")
        plan.append((field.name, kind, depth))
    return plan


def _column_array(name: str, kind: str, depth: int, values: list, target: pa.DataType,
                  url: str) -> pa.Array:
    """Arrow array for one column from per-record decoded (kind, values) or None."""
    n = len(values)
    present = np.array([v is not None for v in values], dtype=bool)
    for v in values:
        if v is not None and v[0] not in (kind, None) and len(v[1]):
            raise TFRecordError(f"{url}: feature {name!r} is a {v[0]} list, but the schema "
                                f"wants {target} (from a {kind} list)")
    lists = [v[1] if v is not None else [] for v in values]
    if depth == 2:
        inner_type = target.value_type
        flat = [step for steps in lists for step in steps]
        inner = _column_array(name, kind, 1, [(kind, s) for s in flat], inner_type, url)
        counts = np.array([len(s) for s in lists], dtype=np.int64)
        offs = np.concatenate(([0], np.cumsum(counts))).astype(np.int32)
        return pa.ListArray.from_arrays(pa.array(offs), inner, type=target,
                                        mask=pa.array(~present))
    counts = np.array([len(l) for l in lists], dtype=np.int64)
    if depth == 0:
        if (counts > 1).any():
            i = int(np.flatnonzero(counts > 1)[0])
            raise TFRecordError(f"{url}: feature {name!r} has {counts[i]} values in a record, "
                                f"but the schema column is a scalar; use an array type")
        present &= counts == 1
    if kind == BYTES:
        flat = [b for l in lists for b in l]
        value_type = target.value_type if depth else target
        if pa.types.is_string(value_type) or pa.types.is_large_string(value_type):
            try:
                elems = pa.array([b.decode("utf-8") for b in flat], value_type)
            except UnicodeDecodeError as e:
                raise TFRecordError(f"{url}: feature {name!r} holds bytes that are not UTF-8; "
                                    "read it as binary") from e
        else:
            elems = pa.array(flat, value_type)
    else:
        arrays = [np.asarray(l) for l in lists if len(l)]
        dtype = np.float32 if kind == FLOAT else np.int64
        flat = np.concatenate(arrays).astype(dtype) if arrays else np.zeros(0, dtype)
        value_type = target.value_type if depth else target
        elems = pa.array(flat).cast(value_type)
    if depth == 0:
        if not len(elems):
            return pa.nulls(n, value_type)
        index = np.zeros(n, dtype=np.int64)
        index[present] = np.arange(int(present.sum()))
        return _with_mask(elems.take(pa.array(index)), present, value_type)
    offs = np.concatenate(([0], np.cumsum(counts))).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offs), elems, type=target, mask=pa.array(~present))


def _with_mask(arr: pa.Array, present: np.ndarray, dtype: pa.DataType) -> pa.Array:
    import pyarrow.compute as pc
    return pc.if_else(pa.array(present), arr, pa.nulls(len(arr), dtype))


def _read_task(batches: Iterator[pa.RecordBatch], files: List[Tuple[str, str]],
               groups: List[List[int]], plan: List[Tuple[str, str, int]],
               arrow_schema_bytes: bytes, record_type: str, partition_cols: List[str],
               conf_dir: Optional[str]) -> Iterator[pa.RecordBatch]:
    """mapInArrow body over ``spark.range(len(groups))``: decode the files of group ``id``
    (indices into ``files``: (url, partition values as JSON)), one after the other."""
    import json
    _use_hadoop_conf(conf_dir)
    schema = pa.ipc.read_schema(pa.py_buffer(arrow_schema_bytes))
    for batch in batches:
        for index in (i for group in batch.column("id").to_pylist() for i in groups[group]):
            url, parts_json = files[index]
            parts = json.loads(parts_json)
            rows: list = []
            for record in _records_of(url):
                rows.append(record)
                if len(rows) >= _ROWS_PER_CHUNK:
                    yield _decode_rows(rows, plan, schema, record_type, parts, url)
                    rows = []
            if rows:
                yield _decode_rows(rows, plan, schema, record_type, parts, url)


def _decode_rows(records: List[bytes], plan, schema: pa.Schema, record_type: str,
                 parts: Dict[str, Optional[str]], url: str) -> pa.RecordBatch:
    n = len(records)
    uniform = decode_uniform_examples(records) if record_type == "Example" else None
    columns = _uniform_columns(uniform, plan, schema, parts, n) if uniform else None
    if columns is None and record_type == "ByteArray":
        columns = {"byte_array": pa.array(records, pa.binary())}
    elif columns is None:
        columns = _columns_one_by_one(records, plan, schema, record_type, parts, url)
    arrays = []
    for field in schema:
        if field.name in columns:
            arrays.append(columns[field.name].cast(field.type))
        elif field.name in parts:
            value = parts[field.name]
            arrays.append(pa.array([value] * n, pa.string()).cast(field.type))
        else:
            arrays.append(pa.nulls(n, field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _columns_one_by_one(records: List[bytes], plan, schema: pa.Schema, record_type: str,
                        parts: Dict[str, Optional[str]], url: str) -> Dict[str, pa.Array]:
    """The plan's columns, each record decoded on its own (any layout, SequenceExamples)."""
    decoded = []
    for record in records:
        try:
            if record_type == "Example":
                decoded.append(decode_example(record))
            else:
                context, lists = decode_sequence_example(record)
                context.update(lists)
                decoded.append(context)
        except (ValueError, IndexError, UnicodeDecodeError) as e:
            raise TFRecordError(f"{url}: a record is not a valid {record_type}: {e}") from e
    return {name: _column_array(name, kind, depth, [d.get(name) for d in decoded],
                                schema.field(name).type, url)
            for name, kind, depth in plan if name not in parts}


def _uniform_columns(uniform: Dict[str, Tuple[str, np.ndarray]], plan, schema: pa.Schema,
                     parts: Dict[str, Optional[str]], n: int) -> Optional[Dict[str, pa.Array]]:
    """The plan's columns from :func:`decode_uniform_examples`' arrays, or None where a column
    needs the general path (a kind that differs from the schema's, which it reports; scalars
    of other than one value; nested lists)."""
    columns: Dict[str, pa.Array] = {}
    for name, kind, depth in plan:
        if name in parts:
            continue
        target = schema.field(name).type
        if name not in uniform:
            columns[name] = pa.nulls(n, target)
            continue
        found, values = uniform[name]
        if found != kind or depth == 2 or (depth == 0 and values.shape[1] != 1):
            return None
        value_type = target.value_type if depth else target
        elems = pa.array(values.ravel()).cast(value_type)
        if depth == 0:
            columns[name] = elems
        else:
            offsets = pa.array(np.arange(n + 1, dtype=np.int32) * values.shape[1])
            columns[name] = pa.ListArray.from_arrays(offsets, elems, type=target)
    return columns


def _check_first_records(files: List[Tuple[str, Dict[str, str]]], plan, schema: pa.Schema,
                         record_type: str, count: int = 16) -> None:
    """Decode the first records of the first file on the driver, so that a schema that does
    not fit the records raises its :class:`TFRecordError` (naming file, feature and types) here,
    at once, not later from inside a Spark task."""
    url, parts = files[0]
    records: List[bytes] = []
    for record in _records_of(url):
        records.append(record)
        if len(records) >= count:
            break
    if records:
        _decode_rows(records, plan, schema, record_type, parts, url)


def read(spark, path: str, schema=None, record_type: str = "Example"):
    """Read TFRecord files into a DataFrame.

    Files are packed into partitions as Spark packs files (``spark.sql.files.maxPartitionBytes``,
    ``spark.sql.files.openCostInBytes``, the default parallelism): a big file is a partition of
    its own, small ones share one, in path order. A file is never split.

    Parameters
    ----------
    spark : pyspark.sql.SparkSession (classic or Spark Connect), or a SparkContext
    path : str
        A file, a directory (recursively; ``_*`` and ``.*`` names skipped; Hive-style
        ``col=value`` subdirectories become columns) or a glob, local or ``hdfs://``.
    schema : pyspark.sql.types.StructType, optional
        Columns to read; inferred from the first records when None (see the module doc).
    record_type : {"Example", "SequenceExample", "ByteArray"}

    Returns
    -------
    pyspark.sql.DataFrame

    Raises
    ------
    TFRecordError
        No files, an unsupported schema type or a record that does not fit the schema;
        :class:`TFRecordCorruptError` (raised in a task) for a failed CRC or truncated file,
        naming the file and the byte offset.
    """
    import json

    from pyspark.sql import types as T
    from pyspark.sql.pandas.types import to_arrow_schema

    from .spark_backend import session_of
    spark = session_of(spark)
    if record_type not in RECORD_TYPES:
        raise TFRecordError(f"record_type must be one of {RECORD_TYPES}, not {record_type!r}")
    listed = _listed(path)
    files = [(url, parts) for url, parts, _ in listed]
    if not files and schema is None:
        raise TFRecordError(f"no TFRecord files under {_resolve(path)}; pass a schema to get "
                            "an empty DataFrame")
    partition_cols: List[str] = []
    for _, parts in files:
        partition_cols += [k for k in parts if k not in partition_cols]
    given = schema is not None
    if schema is None:
        schema = infer_schema([url for url, _ in files], record_type)
        for key in partition_cols:
            values = {parts.get(key) for _, parts in files} - {None}
            integral = all(re.fullmatch(r"-?\d+", v) for v in values)
            schema = schema.add(key, T.LongType() if integral else T.StringType(), True)
    elif isinstance(schema, str):
        schema = T._parse_datatype_string(schema)
    if record_type == "ByteArray":
        plan = []
    else:
        plan = _column_plan(T.StructType([f for f in schema.fields
                                          if f.name not in partition_cols]))
    arrow_schema = to_arrow_schema(schema)
    rows = [(url, json.dumps(parts)) for url, parts in files]
    if not rows:
        return spark.createDataFrame([], schema)
    if given:
        _check_first_records(files, plan, arrow_schema, record_type)
    groups = pack_files([size for _, _, size in listed], _default_parallelism(spark),
                        *_file_packing_conf(spark))
    task = functools.partial(_read_task, files=rows, groups=groups, plan=plan,
                             arrow_schema_bytes=arrow_schema.serialize().to_pybytes(),
                             record_type=record_type, partition_cols=partition_cols,
                             conf_dir=os.environ.get("HADOOP_CONF_DIR"))
    # one partition per group of files, also under Spark Connect (which has no parallelize)
    return spark.range(0, len(groups), 1, len(groups)).mapInArrow(task, schema)


def _default_parallelism(spark) -> int:
    """The application's default parallelism (its cores), also under Spark Connect."""
    configured = spark.conf.get("spark.default.parallelism", None)
    if configured:
        return int(configured)
    try:
        return spark.sparkContext.defaultParallelism
    except Exception:  # noqa: BLE001 - Spark Connect has no SparkContext
        return 8


_BYTE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20,
               "g": 1 << 30, "gb": 1 << 30}


def _conf_bytes(spark, key: str, default: int) -> int:
    """A size setting (``128m``, ``134217728b``...) in bytes; ``default`` if unset or unreadable."""
    match = re.fullmatch(r"(\d+)\s*([a-z]*)", str(spark.conf.get(key, None) or "").strip().lower())
    if not match or match.group(2) not in _BYTE_UNITS:
        return default
    return int(match.group(1)) * _BYTE_UNITS[match.group(2)]


def _file_packing_conf(spark) -> Tuple[int, int]:
    """(``spark.sql.files.maxPartitionBytes``, ``spark.sql.files.openCostInBytes``) in bytes."""
    return (_conf_bytes(spark, "spark.sql.files.maxPartitionBytes", 128 << 20),
            _conf_bytes(spark, "spark.sql.files.openCostInBytes", 4 << 20))
