"""tfspark.tfrecord on the standalone Spark cluster (tasks are retried up to 4 times): round trips, modes, partitions, corruption, TF interop."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

from tfspark import TFSparkError, tfrecord
from tfspark._tfrecord.codec import TFRecordCorruptError, TFRecordError


def _all_types_df(spark):
    from pyspark.ml.linalg import Vectors, VectorUDT
    from pyspark.sql import types as T
    schema = T.StructType([
        T.StructField("b", T.BooleanType()), T.StructField("i", T.IntegerType()),
        T.StructField("l", T.LongType()), T.StructField("f", T.FloatType()),
        T.StructField("d", T.DoubleType()), T.StructField("s", T.StringType()),
        T.StructField("bin", T.BinaryType()),
        T.StructField("al", T.ArrayType(T.LongType())),
        T.StructField("af", T.ArrayType(T.FloatType())),
        T.StructField("as", T.ArrayType(T.StringType())),
        T.StructField("v", VectorUDT()),
    ])
    rows = [
        (True, 1, 2**40, 1.5, -2.25, "héllo", b"\x00\xff", [1, -2, 3], [0.5, 1.5], ["a", "bc"],
         Vectors.dense([1.0, 2.0, 3.0])),
        (False, -7, -1, 0.0, 1e10, "", b"", [], [], [], Vectors.sparse(3, [1], [4.0])),
        (None, None, None, None, None, None, None, None, None, None, None),
    ]
    return spark.createDataFrame(rows, schema)


def _part_files(path):
    found = []
    for root, _, names in os.walk(path):
        found += [os.path.join(root, n) for n in names if n.startswith("part-")]
    return sorted(found)


def test_round_trip_every_type_with_nulls(spark, tmp_path):
    out = str(tmp_path / "all")
    written = tfrecord.write(_all_types_df(spark).coalesce(1), out)
    assert len(written) == 1 and written[0].startswith("file://" + out + "/part-00000-")
    assert os.path.exists(os.path.join(out, "_SUCCESS"))
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]  # staging dir swapped in
    df = tfrecord.read(spark, out)
    types = dict(df.dtypes)
    assert types == {"b": "bigint", "i": "bigint", "l": "bigint", "f": "float", "d": "float",
                     "s": "string", "bin": "binary", "al": "array<bigint>",
                     "af": "array<float>", "as": "array<string>", "v": "array<float>"}
    rows = sorted(df.collect(), key=lambda r: (r.i is None, r.i))
    assert rows[0].i == -7 and rows[0].b == 0 and rows[0].s == "" and rows[0].bin == b""
    assert rows[0].al == [] and rows[0].v == [0.0, 4.0, 0.0]
    assert rows[1].asDict() == {"b": 1, "i": 1, "l": 2**40, "f": 1.5, "d": -2.25, "s": "héllo",
                                "bin": b"\x00\xff", "al": [1, -2, 3], "af": [0.5, 1.5],
                                "as": ["a", "bc"], "v": [1.0, 2.0, 3.0]}
    assert all(v is None for v in rows[2].asDict().values())


def test_read_with_schema_wins(spark, tmp_path):
    from pyspark.sql import types as T
    out = str(tmp_path / "s")
    tfrecord.write(_all_types_df(spark), out)
    schema = T.StructType([T.StructField("b", T.BooleanType()),
                           T.StructField("i", T.IntegerType()),
                           T.StructField("d", T.DoubleType()),
                           T.StructField("s", T.BinaryType()),
                           T.StructField("missing", T.StringType())])
    rows = sorted(tfrecord.read(spark, out, schema=schema).collect(),
                  key=lambda r: (r.i is None, r.i))
    assert [tuple(r) for r in rows] == [(False, -7, 1e10, b"", None),
                                        (True, 1, -2.25, "héllo".encode(), None),
                                        (None, None, None, None, None)]


def test_read_takes_a_spark_context_too_and_names_anything_else(spark, tmp_path):
    out = str(tmp_path / "sc")
    tfrecord.write(spark.range(0, 20, 1, 2), out)
    assert sorted(r.id for r in tfrecord.read(spark.sparkContext, out).collect()) == list(
        range(20))
    with pytest.raises(TFSparkError, match="expected a SparkSession or a SparkContext"):
        tfrecord.read("local[2]", out)


def test_unsupported_column_names_it(spark, tmp_path):
    df = spark.createDataFrame([(1, {"a": 1})], "x int, m map<string,int>")
    with pytest.raises(TFRecordError, match="'m'"):
        tfrecord.write(df, str(tmp_path / "bad"))
    df = spark.createDataFrame([(1, (2, 3))], "x int, st struct<a:int,b:int>")
    with pytest.raises(TFRecordError, match="'st'"):
        tfrecord.write(df, str(tmp_path / "bad"))
    assert not os.path.exists(tmp_path / "bad")


def test_gzip_and_tf_interop(spark, tmp_path):
    import tensorflow as tf
    out = str(tmp_path / "gz")
    df = spark.range(100).selectExpr("id", "cast(id as float) * 0.5 as x",
                                     "array(cast(id as float), 1.0) as v",
                                     "concat('r', cast(id as string)) as name")
    tfrecord.write(df.repartition(2), out, compression="gzip")
    files = _part_files(out)
    assert len(files) == 2 and all(f.endswith(".tfrecord.gz") for f in files)
    assert sorted(r.id for r in tfrecord.read(spark, out).collect()) == list(range(100))
    features = {"id": tf.io.FixedLenFeature([], tf.int64),
                "x": tf.io.FixedLenFeature([], tf.float32),
                "v": tf.io.FixedLenFeature([2], tf.float32),
                "name": tf.io.FixedLenFeature([], tf.string)}
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(1000)
    parsed = tf.io.parse_example(next(iter(ds)), features)
    order = np.argsort(parsed["id"].numpy())
    assert list(parsed["id"].numpy()[order]) == list(range(100))
    assert np.allclose(parsed["x"].numpy()[order], np.arange(100) * 0.5)
    assert parsed["name"].numpy()[order][7] == b"r7"


def test_reads_files_written_by_tensorflow(spark, tmp_path):
    import tensorflow as tf
    path = tmp_path / "tf" / "data.tfrecord"
    path.parent.mkdir()
    with tf.io.TFRecordWriter(str(path)) as w:
        for i in range(5):
            feats = {"k": tf.train.Feature(int64_list=tf.train.Int64List(value=[i])),
                     "emb": tf.train.Feature(float_list=tf.train.FloatList(value=[i, i + 1])),
                     "raw": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"\xff" * i]))}
            w.write(tf.train.Example(features=tf.train.Features(feature=feats))
                    .SerializeToString())
    df = tfrecord.read(spark, str(tmp_path / "tf"))
    assert dict(df.dtypes) == {"k": "bigint", "emb": "array<float>", "raw": "binary"}
    rows = sorted(df.collect())
    assert rows[3].k == 3 and rows[3].emb == [3.0, 4.0] and rows[3].raw == b"\xff" * 3


def test_modes(spark, tmp_path):
    out = str(tmp_path / "m")
    tfrecord.write(spark.range(10), out)
    with pytest.raises(TFRecordError, match=out):
        tfrecord.write(spark.range(3), out)
    tfrecord.write(spark.range(20, 23), out, mode="append")
    assert sorted(r.id for r in tfrecord.read(spark, out).collect()) == \
        list(range(10)) + [20, 21, 22]
    tfrecord.write(spark.range(100, 102), out, mode="overwrite")
    assert sorted(r.id for r in tfrecord.read(spark, out).collect()) == [100, 101]
    assert sorted(os.listdir(tmp_path)) == ["m"]  # no staging or old directories left


def test_partition_by(spark, tmp_path):
    out = str(tmp_path / "p")
    df = spark.createDataFrame([(i, "a/b" if i % 2 else "c", i % 3) for i in range(12)],
                               "id long, cat string, k int")
    tfrecord.write(df, out, partition_by=["cat", "k"])
    dirs = sorted(os.listdir(out))
    assert dirs == ["_SUCCESS", "cat=a%2Fb", "cat=c"]
    assert sorted(os.listdir(os.path.join(out, "cat=c"))) == ["k=0", "k=1", "k=2"]
    back = tfrecord.read(spark, out)
    assert dict(back.dtypes) == {"id": "bigint", "cat": "string", "k": "bigint"}
    assert sorted(tuple(r) for r in back.collect()) == \
        [(i, "a/b" if i % 2 else "c", i % 3) for i in range(12)]


def test_byte_array(spark, tmp_path):
    import tensorflow as tf
    out = str(tmp_path / "ba")
    df = spark.createDataFrame([(bytes([i]) * i,) for i in range(6)], "payload binary")
    tfrecord.write(df, out, record_type="ByteArray")
    raw = sorted(r.numpy() for r in tf.data.TFRecordDataset(_part_files(out)))
    assert raw == sorted(bytes([i]) * i for i in range(6))
    back = tfrecord.read(spark, out, record_type="ByteArray")
    assert back.columns == ["byte_array"]
    assert sorted(r.byte_array for r in back.collect()) == raw
    with pytest.raises(TFRecordError, match="binary"):
        tfrecord.write(spark.range(2), str(tmp_path / "x"), record_type="ByteArray")


def test_sequence_example(spark, tmp_path):
    import tensorflow as tf
    out = str(tmp_path / "seq")
    df = spark.createDataFrame([(1, [[1.0, 2.0], [3.0]], [["a"], ["b", "c"]]),
                                (2, [], None)],
                               "id long, frames array<array<float>>, "
                               "words array<array<string>>")
    with pytest.raises(TFRecordError, match="SequenceExample"):
        tfrecord.write(df, str(tmp_path / "ex"))
    tfrecord.write(df.coalesce(1), out, record_type="SequenceExample")
    back = tfrecord.read(spark, out, record_type="SequenceExample")
    assert dict(back.dtypes) == {"id": "bigint", "frames": "array<array<float>>",
                                 "words": "array<array<string>>"}
    rows = sorted(back.collect())
    assert rows[0].frames == [[1.0, 2.0], [3.0]] and rows[0].words == [["a"], ["b", "c"]]
    assert rows[1].frames == [] and rows[1].words is None
    record = next(iter(tf.data.TFRecordDataset(_part_files(out))))
    ctx, seq = tf.io.parse_single_sequence_example(
        record, context_features={"id": tf.io.FixedLenFeature([], tf.int64)},
        sequence_features={"frames": tf.io.VarLenFeature(tf.float32)})
    assert int(ctx["id"]) == 1
    assert tf.sparse.to_dense(seq["frames"]).numpy().tolist() == [[1.0, 2.0], [3.0, 0.0]]


def test_corrupt_file_names_file_and_offset(spark, tmp_path):
    out = str(tmp_path / "c")
    tfrecord.write(spark.range(50).coalesce(1), out)
    part = _part_files(out)[0]
    data = bytearray(open(part, "rb").read())
    record_len = int.from_bytes(data[:8], "little") + 16
    data[record_len * 3 + 14] ^= 0xFF  # a data byte of the 4th record
    open(part, "wb").write(bytes(data))
    expected = f"{os.path.basename(part)} at byte offset {record_len * 3}: data checksum"
    with pytest.raises(TFRecordCorruptError, match=expected):  # schema inference, on the driver
        tfrecord.read(spark, out)
    with pytest.raises(TFRecordCorruptError, match=expected):  # a given schema: checked
        tfrecord.read(spark, out, schema="id long")  # against the first records, on the driver

    data[record_len * 3 + 14] ^= 0xFF  # repaired; now a record no check on the driver reads
    data[record_len * 40 + 14] ^= 0xFF
    open(part, "wb").write(bytes(data))
    later = f"{os.path.basename(part)} at byte offset {record_len * 40}: data checksum"
    with pytest.raises(Exception) as err:  # decoding in a task
        tfrecord.read(spark, out, schema="id long").collect()
    assert "TFRecordCorruptError" in str(err.value) and later in str(err.value)


def test_a_schema_that_does_not_fit_the_records_is_refused_at_once(spark, tmp_path):
    out = str(tmp_path / "ids")
    tfrecord.write(spark.range(10).selectExpr("id", "CAST(id AS float) AS x"), out)
    started = time.monotonic()
    with pytest.raises(TFRecordError, match=r"'x'") as error:
        tfrecord.read(spark, out, schema="id long, x array<string>")
    assert time.monotonic() - started < 10
    assert ".tfrecord" in str(error.value)  # names the file


def test_failed_attempt_is_retried_without_duplicates(spark, tmp_path):
    flag = str(tmp_path / "failed-once")
    out = str(tmp_path / "r")

    def fail_first_attempt(batches):
        """Pass rows through; the first attempt of partition 0 raises after all its rows."""
        from pyspark import TaskContext
        for batch in batches:
            yield batch
        if TaskContext.get().partitionId() == 0 and not os.path.exists(flag):
            open(flag, "w").close()
            raise RuntimeError("injected failure after writing part of the output")

    df = spark.range(0, 40000, numPartitions=2)
    # runs in the writing task, upstream of the encoder, which has consumed every row by then
    df = df.mapInArrow(fail_first_attempt, df.schema)
    tfrecord.write(df, out)
    assert os.path.exists(flag)
    files = _part_files(out)
    assert [os.path.basename(f)[:10] for f in files] == ["part-00000", "part-00001"]
    ids = sorted(r.id for r in tfrecord.read(spark, out).collect())
    assert ids == list(range(40000))
    hidden = [n for _, _, names in os.walk(tmp_path) for n in names if n.startswith(".")]
    assert hidden == []
