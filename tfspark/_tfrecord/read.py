"""TFRecord files -> DataFrame (``tfspark.tfrecord.read``): listing, packing, decoding.

The driver lists the files (:func:`list_files`: recursively, Hive-style ``col=value`` folders
as columns), infers a schema from the first records unless given one, checks a given schema
against the first records, and packs the files into partitions as Spark packs files
(:func:`pack_files`). Each task of one ``mapInArrow`` stage decodes its files' records into
Arrow batches: Examples that share one byte layout (fixed-shape numeric features) in one
vectorised step, anything else record by record. Wire format: :mod:`tfspark._tfrecord.codec`;
type mapping: :mod:`tfspark._tfrecord.schema`; files: :mod:`tfspark.fs`.
"""
from __future__ import annotations

import functools
import json
import os
import re
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa

from tfspark import fs
from tfspark._tfrecord.codec import (BYTES, FLOAT, TFRecordError, decode_example,
                                     decode_sequence_example, decode_uniform_examples, open_records)
from tfspark._tfrecord.schema import (RECORD_TYPES, Inference, column_plan, is_data_file,
                                      partition_values)

INFER_RECORDS = 1000  # records sampled to infer a schema
_RECORDS_PER_BATCH = 4096  # records decoded into one Arrow batch


# ---------------------------------------------------------------------------------------------
# listing and packing


def list_files(path: str) -> List[Tuple[str, Dict[str, str]]]:
    """TFRecord files under ``path``: (URL, Hive partition values) pairs, sorted by URL.

    ``path`` may be a file, a directory (searched recursively; names starting with ``_`` or
    ``.`` are skipped) or a glob pattern.
    """
    return [(url, parts) for url, parts, _ in _listed(path)]


def _listed(path: str) -> List[Tuple[str, Dict[str, str], int]]:
    """:func:`list_files` with each file's size in bytes."""
    url = fs.resolve(path)
    roots = fs.glob(url) if any(c in url for c in "*?[") else [url]
    found: List[Tuple[str, Dict[str, str], int]] = []
    for root in roots:
        filesystem = fs.get_filesystem(root)
        st = filesystem.status(root)
        if not st.is_dir:
            found.append((st.path, {}, st.size))
            continue
        for rel, dirs, files in filesystem.walk_status(root):
            if rel and any(not is_data_file(p) for p in rel.split("/")):
                continue
            parts = partition_values(rel)
            for f in files:
                if is_data_file(f.name):
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
    seen = Inference()
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
               conf_dir: Optional[str],
               tokens: "fs.credentials.HandedTokens" = fs.credentials.NO_TOKENS
               ) -> Iterator[pa.RecordBatch]:
    """mapInArrow body over ``spark.range(len(groups))``: decode the files of group ``id``
    (indices into ``files``: (url, partition values as JSON)), one after the other."""
    with tokens.used():
        yield from _read_groups(batches, files, groups, plan, arrow_schema_bytes, record_type,
                                partition_cols, conf_dir)


def _read_groups(batches: Iterator[pa.RecordBatch], files: List[Tuple[str, str]],
                 groups: List[List[int]], plan: List[Tuple[str, str, int]],
                 arrow_schema_bytes: bytes, record_type: str, partition_cols: List[str],
                 conf_dir: Optional[str]) -> Iterator[pa.RecordBatch]:
    fs.use_hadoop_conf(conf_dir)
    schema = pa.ipc.read_schema(pa.py_buffer(arrow_schema_bytes))
    for batch in batches:
        for index in (i for group in batch.column("id").to_pylist() for i in groups[group]):
            url, parts_json = files[index]
            parts = json.loads(parts_json)
            rows: list = []
            for record in _records_of(url):
                rows.append(record)
                if len(rows) >= _RECORDS_PER_BATCH:
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
    from pyspark.sql import types as T
    from pyspark.sql.pandas.types import to_arrow_schema

    from tfspark._driver.spark_backend import backend_for, session_of
    spark = session_of(spark)
    if record_type not in RECORD_TYPES:
        raise TFRecordError(f"record_type must be one of {RECORD_TYPES}, not {record_type!r}")
    listed = _listed(path)
    files = [(url, parts) for url, parts, _ in listed]
    if not files and schema is None:
        raise TFRecordError(f"no TFRecord files under {fs.resolve(path)}; pass a schema to get "
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
        plan = column_plan(T.StructType([f for f in schema.fields
                                          if f.name not in partition_cols]))
    arrow_schema = to_arrow_schema(schema)
    rows = [(url, json.dumps(parts)) for url, parts in files]
    if not rows:
        return spark.createDataFrame([], schema)
    if given:
        _check_first_records(files, plan, arrow_schema, record_type)
    backend = backend_for(spark)
    groups = pack_files([size for _, _, size in listed], backend.default_parallelism(),
                        *_file_packing_conf(spark))
    task = functools.partial(_read_task, files=rows, groups=groups, plan=plan,
                             arrow_schema_bytes=arrow_schema.serialize().to_pybytes(),
                             record_type=record_type, partition_cols=partition_cols,
                             conf_dir=os.environ.get("HADOOP_CONF_DIR"),
                             tokens=fs.handed_tokens(sorted({url for url, _ in rows}),
                                                     backend.task_callback_hosts()))
    # one partition per group of files, also under Spark Connect (which has no parallelize)
    return spark.range(0, len(groups), 1, len(groups)).mapInArrow(task, schema)


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
