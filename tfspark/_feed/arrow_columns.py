"""Conversions between Spark data, Arrow record batches and numpy columns for the Spark feed.

What crosses the wire from a feeding Spark task to a TF node is an Arrow record batch whose
columns are one of: a primitive numeric column (one scalar per row), a fixed-size list column
(one fixed-shape numeric array per row; the row shape is in the field's metadata), or a
binary/string column (one value per row). This module makes such batches from RDD elements and
DataFrame batches, and turns them back into numpy arrays. Pure: no sockets, no Spark, no TF.
"""
from __future__ import annotations

import json
from typing import Any, Dict, Iterable, List, Sequence, Tuple

import numpy as np
import pyarrow as pa

from tfspark.errors import FeedDataError

SHAPE_KEY = b"tfspark.shape"
STRUCTURE_KEY = b"tfspark.structure"  # "columns" (DataFrame), "tuple" or "single" (RDD)


def _field_column(name: str, values: Sequence[Any]) -> Tuple[pa.Field, pa.Array]:
    first = values[0]
    if isinstance(first, (bytes, bytearray, str)):
        array = pa.array(values)
        return pa.field(name, array.type), array
    try:
        stacked = np.asarray(values)
    except ValueError as e:
        raise FeedDataError(f"field {name} holds arrays of different shapes ({e}); "
                            "pad them to one shape") from None
    if stacked.dtype == object:
        raise FeedDataError(f"field {name} holds values of different shapes or types "
                            f"(first one: {type(first).__name__}); give every element the "
                            "same structure")
    if stacked.dtype.kind not in "biuf":
        raise FeedDataError(f"field {name} has values of type {stacked.dtype}, not numbers, "
                            "bytes or strings")
    return _numeric_column(name, stacked)


def _numeric_column(name: str, stacked: np.ndarray) -> Tuple[pa.Field, pa.Array]:
    if stacked.ndim == 1:
        array = pa.array(stacked)
        return pa.field(name, array.type), array
    row_shape = stacked.shape[1:]
    flat = pa.array(np.ascontiguousarray(stacked).reshape(-1))
    array = pa.FixedSizeListArray.from_arrays(flat, int(np.prod(row_shape)))
    return pa.field(name, array.type, metadata={SHAPE_KEY: json.dumps(row_shape)}), array


def batch_from_elements(elements: List[Any]) -> pa.RecordBatch:
    """An Arrow batch from RDD elements: a tuple or list is a row of fields, else one field."""
    structure = "tuple" if isinstance(elements[0], (tuple, list)) else "single"
    rows = elements if structure == "tuple" else [(e,) for e in elements]
    width = len(rows[0])
    if any(len(r) != width for r in rows):
        raise FeedDataError("RDD elements have different numbers of fields; every element "
                            f"must have {width}")
    fields, arrays = zip(*(_field_column(f"_{i}", [r[i] for r in rows]) for i in range(width)))
    schema = pa.schema(fields, metadata={STRUCTURE_KEY: structure})
    return pa.RecordBatch.from_arrays(list(arrays), schema=schema)


def normalize_dataframe_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Check a DataFrame batch and turn variable-length list columns into fixed-size ones."""
    fields, arrays = [], []
    for field, column in zip(batch.schema, batch.columns):
        if column.null_count:
            raise FeedDataError(f"column '{field.name}' has null values; fill or drop them "
                                "before feeding TF")
        if pa.types.is_list(field.type) or pa.types.is_large_list(field.type):
            field, column = _fixed_size(field, column)
        elif not (pa.types.is_integer(field.type) or pa.types.is_floating(field.type)
                  or pa.types.is_boolean(field.type) or pa.types.is_binary(field.type)
                  or pa.types.is_string(field.type)):
            raise FeedDataError(f"column '{field.name}' has type {field.type}, which cannot "
                                "become a tensor: use numbers, arrays of numbers, ML vectors, "
                                "strings or binary")
        fields.append(field)
        arrays.append(column)
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(
        fields, metadata={STRUCTURE_KEY: "columns"}))


def _fixed_size(field: pa.Field, column: pa.Array) -> Tuple[pa.Field, pa.Array]:
    value_type = field.type.value_type
    if not (pa.types.is_integer(value_type) or pa.types.is_floating(value_type)):
        raise FeedDataError(f"column '{field.name}' is an array of {value_type}; only arrays of "
                            "numbers can become tensors")
    lengths = column.value_lengths().to_numpy(zero_copy_only=False)
    if len(lengths) and (lengths != lengths[0]).any():
        raise FeedDataError(f"array column '{field.name}' has rows of different lengths "
                            f"({lengths.min()} to {lengths.max()}); pad them to one length")
    if column.flatten().null_count:
        raise FeedDataError(f"array column '{field.name}' has null elements")
    width = int(lengths[0]) if len(lengths) else 0
    values = column.flatten()
    return (pa.field(field.name, pa.list_(value_type, width),
                     metadata={SHAPE_KEY: json.dumps([width])}),
            pa.FixedSizeListArray.from_arrays(values, width))


def row_shape(field: pa.Field) -> Tuple[int, ...]:
    """The shape of one row's value of ``field`` (``()`` for scalars)."""
    if field.metadata and SHAPE_KEY in field.metadata:
        return tuple(json.loads(field.metadata[SHAPE_KEY]))
    return ()


def numpy_columns(batch: pa.RecordBatch) -> Dict[str, np.ndarray]:
    """Each column of ``batch`` as a numpy array of shape ``(rows,) + row_shape``."""
    columns = {}
    for field, column in zip(batch.schema, batch.columns):
        if pa.types.is_fixed_size_list(field.type):
            values = column.flatten().to_numpy(zero_copy_only=False)
            columns[field.name] = values.reshape((len(column),) + row_shape(field))
        elif pa.types.is_string(field.type) or pa.types.is_binary(field.type):
            columns[field.name] = np.array(column.to_pylist(), dtype=object)
        else:
            columns[field.name] = column.to_numpy(zero_copy_only=False)
    return columns


def structure_of(schema: pa.Schema) -> str:
    return (schema.metadata or {}).get(STRUCTURE_KEY, b"columns").decode()


def rows_of(columns: Dict[str, np.ndarray], structure: str) -> List[Any]:
    """Rows (as TensorFlowOnSpark's ``next_batch`` gives them) from numpy columns."""
    arrays = list(columns.values())
    if not arrays:
        return []
    if structure == "single":
        return list(arrays[0])
    return [tuple(values) for values in zip(*arrays)]


def chunks(elements: Iterable[Any], size: int) -> Iterable[List[Any]]:
    """Lists of at most ``size`` consecutive elements."""
    chunk: List[Any] = []
    for element in elements:
        chunk.append(element)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
