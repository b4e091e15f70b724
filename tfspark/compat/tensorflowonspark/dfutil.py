"""TensorFlowOnSpark's ``dfutil``: DataFrames to and from TFRecord files of ``tf.train.Example``,
over :mod:`tfspark.tfrecord`.

As TFoS did: ``loadTFRecords`` reads float features as ``double``, bytes features as ``string``
unless named in ``binary_features`` (then ``binary``), and features with several values as
arrays; ``saveAsTFRecords`` refuses an existing ``output_dir``.
"""
from __future__ import annotations

import weakref
from typing import Any, Sequence

from tfspark.compat.tensorflowonspark._errors import NotKeptError

__all__ = ["saveAsTFRecords", "loadTFRecords", "isLoadedDF"]

_loaded: "weakref.WeakKeyDictionary[Any, str]" = weakref.WeakKeyDictionary()


def isLoadedDF(df: Any) -> bool:  # noqa: N802 - TFoS's name
    """True if ``df`` is a DataFrame returned by :func:`loadTFRecords`."""
    try:
        return df in _loaded
    except TypeError:
        return False


def saveAsTFRecords(df: Any, output_dir: str) -> None:  # noqa: N802 - TFoS's name
    """Write ``df`` as TFRecord files of ``tf.train.Example`` under ``output_dir``."""
    from tfspark.tfrecord import write
    write(df, output_dir)


def loadTFRecords(sc: Any, input_dir: str,  # noqa: N802 - TFoS's name
                  binary_features: Sequence[str] = ()) -> Any:
    """A DataFrame of the ``tf.train.Example`` records under ``input_dir``."""
    from pyspark.sql import types as T

    from tfspark.tfrecord import infer_schema, list_files, read

    def tfos_type(name: str, kind: Any) -> Any:
        element = kind.elementType if isinstance(kind, T.ArrayType) else kind
        if name in binary_features:
            element = T.BinaryType()
        elif isinstance(element, (T.FloatType, T.DoubleType)):
            element = T.DoubleType()
        elif isinstance(element, (T.StringType, T.BinaryType)):
            element = T.StringType()
        return T.ArrayType(element, True) if isinstance(kind, T.ArrayType) else element

    files = [url for url, _ in list_files(input_dir)]
    schema = infer_schema(files) if files else None
    if schema is not None:
        schema = T.StructType([T.StructField(f.name, tfos_type(f.name, f.dataType), True)
                               for f in sorted(schema.fields, key=lambda f: f.name)])
    df = read(sc, input_dir, schema=schema)
    _loaded[df] = input_dir
    return df


def toTFExample(dtypes: Any) -> Any:  # noqa: N802 - TFoS's name
    raise NotKeptError("dfutil.toTFExample", "write a DataFrame with saveAsTFRecords(df, dir) "
                       "or tfspark.tfrecord.write(df, dir)")


def fromTFExample(iter: Any, binary_features: Sequence[str] = ()) -> Any:  # noqa: N802
    raise NotKeptError("dfutil.fromTFExample", "read records with loadTFRecords(sc, dir) or "
                       "tfspark.tfrecord.read(spark, dir)")


def infer_schema(example: Any, binary_features: Sequence[str] = ()) -> Any:
    raise NotKeptError("dfutil.infer_schema(example)", "loadTFRecords infers the schema; "
                       "tfspark.tfrecord.infer_schema(files) reads it from files")
