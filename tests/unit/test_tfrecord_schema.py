"""Spark columns <-> TFRecord features, and partition columns <-> Hive folders (pure)."""
from __future__ import annotations

import pytest
from pyspark.ml.linalg import VectorUDT
from pyspark.sql import types as T

from tfspark._tfrecord.codec import BYTES, FLOAT, INT64
from tfspark._tfrecord.schema import (Inference, column_plan, column_specs, partition_dir,
                                      partition_values)
from tfspark.errors import TFRecordError


def test_each_supported_column_type_has_its_feature_kind_and_depth():
    schema = T.StructType([
        T.StructField("flag", T.BooleanType()), T.StructField("n", T.LongType()),
        T.StructField("s", T.ShortType()), T.StructField("x", T.DoubleType()),
        T.StructField("name", T.StringType()), T.StructField("raw", T.BinaryType()),
        T.StructField("xs", T.ArrayType(T.FloatType())), T.StructField("v", VectorUDT()),
        T.StructField("skip", T.StringType())])
    specs = [(s.name, s.kind, s.depth) for s in column_specs(schema, exclude=["skip"])]
    assert specs == [("flag", INT64, 0), ("n", INT64, 0), ("s", INT64, 0), ("x", FLOAT, 0),
                     ("name", BYTES, 0), ("raw", BYTES, 0), ("xs", FLOAT, 1), ("v", FLOAT, 1)]


def test_nested_arrays_need_sequence_examples_and_structs_are_refused_by_name():
    nested = T.StructType([T.StructField("frames", T.ArrayType(T.ArrayType(T.LongType())))])
    with pytest.raises(TFRecordError, match="record_type='SequenceExample'"):
        column_specs(nested)
    assert column_specs(nested, "SequenceExample")[0].depth == 2
    struct = T.StructType([T.StructField("point", T.StructType([T.StructField("a",
                                                                            T.IntegerType())]))])
    with pytest.raises(TFRecordError, match="column 'point' of type struct<a:int>"):
        column_specs(struct)


def test_inference_tells_scalars_lists_text_and_bytes_apart():
    inference = Inference()
    inference.add("label", INT64, [1])
    inference.add("image", FLOAT, [0.1, 0.2])
    inference.add("name", BYTES, [b"caf\xc3\xa9"])
    inference.add("blob", BYTES, [b"\xff\x00"])
    inference.add("label", INT64, [0])
    schema = inference.schema()
    assert [(f.name, f.dataType.simpleString()) for f in schema.fields] == [
        ("label", "bigint"), ("image", "array<float>"), ("name", "string"), ("blob", "binary")]
    assert column_plan(schema) == [("label", INT64, 0), ("image", FLOAT, 1),
                                   ("name", BYTES, 0), ("blob", BYTES, 0)]


def test_a_feature_of_two_kinds_is_an_error_asking_for_a_schema():
    inference = Inference()
    inference.add("x", INT64, [1])
    with pytest.raises(TFRecordError, match="pass a schema"):
        inference.add("x", FLOAT, [1.0])


def test_partition_folders_round_trip_with_escapes_nulls_and_booleans():
    keys = ["day", "city", "ok", "missing"]
    folder = partition_dir(keys, ["2026-12-07", "São Paulo/Centro", True, None])
    assert folder == ("day=2026-12-07/city=S%C3%A3o%20Paulo%2FCentro/ok=true/"
                      "missing=__HIVE_DEFAULT_PARTITION__")
    assert partition_values(folder) == {"day": "2026-12-07", "city": "São Paulo/Centro",
                                        "ok": "true", "missing": None}
