"""DataFrame columns <-> TFRecord features, both ways, and partition columns <-> Hive folders.

Pure: no I/O. :mod:`tfspark.tfrecord` writes with :func:`column_specs` and
:func:`partition_dir`; :mod:`tfspark._tfrecord.read` infers a schema with :class:`Inference`,
decodes with :func:`column_plan` and reads partition values with :func:`partition_values`.
The mapping itself is tabled in :mod:`tfspark.tfrecord`'s docstring.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple
from urllib.parse import quote, unquote

from tfspark._tfrecord.codec import BYTES, FLOAT, INT64, ColumnSpec, TFRecordError

RECORD_TYPES = ("Example", "SequenceExample", "ByteArray")
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"  # Hive's folder name for a null partition value


def spark_kind(dt) -> Optional[str]:
    """The feature list kind a scalar Spark type is stored as (None: it cannot be)."""
    from pyspark.sql import types as T
    if isinstance(dt, (T.BooleanType, T.ByteType, T.ShortType, T.IntegerType, T.LongType)):
        return INT64
    if isinstance(dt, (T.FloatType, T.DoubleType)):
        return FLOAT
    if isinstance(dt, (T.StringType, T.BinaryType)):
        return BYTES
    return None


def is_vector(dt) -> bool:
    """Whether ``dt`` is ``pyspark.ml.linalg``'s vector type."""
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
        if is_vector(dt):
            specs.append(ColumnSpec(field.name, FLOAT, 1))
            continue
        while isinstance(dt, T.ArrayType) and depth < 2:
            dt, depth = dt.elementType, depth + 1
        kind = spark_kind(dt)
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


class Inference:
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


def column_plan(schema) -> List[Tuple[str, str, int]]:
    """(name, kind, depth) for each column of a read schema; TFRecordError if unsupported."""
    from pyspark.sql import types as T
    plan = []
    for field in schema.fields:
        dt, depth = field.dataType, 0
        while isinstance(dt, T.ArrayType) and depth < 2:
            dt, depth = dt.elementType, depth + 1
        kind = spark_kind(dt)
        if kind is None:
            raise TFRecordError(f"schema column {field.name!r} of type "
                                f"{field.dataType.simpleString()} cannot be read from TFRecords"
                                "; use boolean, integer, float, double, string, binary or "
                                "arrays of them")
        plan.append((field.name, kind, depth))
    return plan


# ---------------------------------------------------------------------------------------------
# Hive-style partition folders


def is_data_file(name: str) -> bool:
    """Not a marker (``_SUCCESS``) or hidden (``.staging``) file or folder."""
    return not name.startswith(("_", "."))


def partition_dir(keys: Sequence[str], values: Sequence) -> str:
    """The ``col=value/...`` folder of one partition key (values escaped as Hive does)."""
    segments = []
    for key, value in zip(keys, values):
        text = HIVE_NULL if value is None else (
            ("true" if value else "false") if isinstance(value, bool) else str(value))
        encoded = quote(text, safe="") if value is not None else text
        segments.append(f"{quote(key, safe='')}={encoded}")
    return "/".join(segments)


def partition_values(relative_dir: str) -> Dict[str, Optional[str]]:
    """``{column: value}`` of the ``col=value`` segments of a folder below the dataset's root
    (``None`` for Hive's null folder)."""
    values: Dict[str, Optional[str]] = {}
    for segment in relative_dir.split("/") if relative_dir else []:
        if "=" in segment:
            key, value = segment.split("=", 1)
            values[unquote(key)] = None if value == HIVE_NULL else unquote(value)
    return values
