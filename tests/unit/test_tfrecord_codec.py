"""tfspark._tfrecord.codec: framing, CRCs and the Example wire format, against TF's own code."""
from __future__ import annotations

import gzip
import io
import os
import struct

import numpy as np
import pyarrow as pa
import pytest

from tfspark._tfrecord.codec import (BYTES, FLOAT, INT64, ColumnSpec, TFRecordCorruptError,
                                     TFRecordError, crc32c, decode_example, decode_sequence_example,
                                     decode_uniform_examples, encode_examples, frame, frame_records,
                                     masked_crc, open_records, varint_decode, varint_encode)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _batch():
    return pa.record_batch({
        "i": pa.array([1, None, -5, 2**40], pa.int64()),
        "b": pa.array([True, False, None, True]),
        "f": pa.array([1.5, 2.0, None, -3.25], pa.float64()),
        "s": pa.array(["a", "héllo", None, ""]),
        "by": pa.array([b"\x00\xff", None, b"", b"x" * 300]),
        "af": pa.array([[1.0, 2.0], [], None, [3.0] * 200], pa.list_(pa.float32())),
        "ai": pa.array([[1, -1, 300], None, [], [2**62]], pa.list_(pa.int64())),
        "as": pa.array([["x", "yy"], None, [], ["z"]], pa.list_(pa.string())),
    })


SPECS = [ColumnSpec("i", INT64, 0), ColumnSpec("b", INT64, 0), ColumnSpec("f", FLOAT, 0),
         ColumnSpec("s", BYTES, 0), ColumnSpec("by", BYTES, 0), ColumnSpec("af", FLOAT, 1),
         ColumnSpec("ai", INT64, 1), ColumnSpec("as", BYTES, 1)]

EXPECTED = [
    {"i": [1], "b": [1], "f": [1.5], "s": [b"a"], "by": [b"\x00\xff"], "af": [1.0, 2.0],
     "ai": [1, -1, 300], "as": [b"x", b"yy"]},
    {"b": [0], "f": [2.0], "s": ["héllo".encode()], "af": []},
    {"i": [-5], "by": [b""], "ai": [], "as": []},
    {"i": [2**40], "b": [1], "f": [-3.25], "s": [b""], "by": [b"x" * 300], "af": [3.0] * 200,
     "ai": [2**62], "as": [b"z"]},
]


def test_crc32c_known_values():
    # RFC 3720 test vectors
    assert crc32c(b"") == 0
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(bytes([0xFF] * 32)) == 0x62A8AB43


def test_frame_layout():
    framed = frame(b"abc")
    assert len(framed) == 8 + 4 + 3 + 4
    assert struct.unpack("<Q", framed[:8])[0] == 3
    assert struct.unpack("<I", framed[8:12])[0] == masked_crc(framed[:8])
    assert framed[12:15] == b"abc"
    assert struct.unpack("<I", framed[15:])[0] == masked_crc(b"abc")
    recs = pa.array([b"abc", b"", b"z" * 1000], pa.large_binary())
    assert bytes(frame_records(recs)) == frame(b"abc") + frame(b"") + frame(b"z" * 1000)


def test_varints_round_trip():
    values = np.array([0, 1, 127, 128, 300, 2**35, 2**63 - 1, -1, -(2**63)], dtype=np.int64)
    data, offsets = varint_encode(values)
    assert list(np.diff(offsets)) == [1, 1, 1, 2, 2, 6, 9, 10, 10]
    assert bytes(data[3:5]) == b"\x80\x01"
    assert varint_decode(data).tolist() == values.tolist()


def test_decode_matches_written_values():
    records = encode_examples(_batch(), SPECS).to_pylist()
    for record, expected in zip(records, EXPECTED):
        decoded = decode_example(record)
        assert {k: list(v[1]) for k, v in decoded.items()} == expected


def test_tensorflow_parses_what_we_write():
    tf = pytest.importorskip("tensorflow")
    records = encode_examples(_batch(), SPECS).to_pylist()
    for record, expected in zip(records, EXPECTED):
        example = tf.train.Example.FromString(record)
        got = {}
        for key, feature in example.features.feature.items():
            kind = feature.WhichOneof("kind")
            got[key] = list(getattr(feature, kind).value)
        assert got == expected
    # byte for byte what TF serializes, for a one-feature Example
    ours = encode_examples(pa.record_batch({"v": pa.array([[1.0, 2.5]], pa.list_(pa.float32()))}),
                           [ColumnSpec("v", FLOAT, 1)]).to_pylist()[0]
    theirs = tf.train.Example(features=tf.train.Features(feature={
        "v": tf.train.Feature(float_list=tf.train.FloatList(value=[1.0, 2.5]))}))
    assert ours == theirs.SerializeToString()


def test_tensorflow_reads_our_framing(tmp_path):
    tf = pytest.importorskip("tensorflow")
    records = encode_examples(_batch(), SPECS)
    path = tmp_path / "x.tfrecord"
    path.write_bytes(bytes(frame_records(records)))
    gz = tmp_path / "x.tfrecord.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    features = {"i": tf.io.FixedLenFeature([], tf.int64, default_value=0),
                "af": tf.io.VarLenFeature(tf.float32),
                "s": tf.io.FixedLenFeature([], tf.string, default_value=b"?")}
    for name, compression in ((path, ""), (gz, "GZIP")):
        ds = tf.data.TFRecordDataset(str(name), compression_type=compression).batch(10)
        parsed = tf.io.parse_example(next(iter(ds)), features)
        assert parsed["i"].numpy().tolist() == [1, 0, -5, 2**40]
        assert parsed["s"].numpy().tolist() == [b"a", "héllo".encode(), b"?", b""]
        assert tf.sparse.to_dense(parsed["af"]).numpy()[3].tolist() == [3.0] * 200


def test_we_read_tensorflow_writer_output(tmp_path):
    tf = pytest.importorskip("tensorflow")
    path = str(tmp_path / "tf.tfrecord")
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    with tf.io.TFRecordWriter(path, options) as writer:
        for i in range(3):
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                "n": tf.train.Feature(int64_list=tf.train.Int64List(value=[i, -i])),
                "w": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"w%d" % i])),
            })).SerializeToString())
    with open(path, "rb") as f:
        records = list(open_records(f, path))
    assert [decode_example(r)["n"][1].tolist() for r in records] == [[0, 0], [1, -1], [2, -2]]
    assert decode_example(records[2])["w"] == (BYTES, [b"w2"])


def test_sequence_example_against_tensorflow():
    tf = pytest.importorskip("tensorflow")
    batch = pa.record_batch({
        "c": pa.array([1, 2]),
        "fl": pa.array([[[1.0], [2.0, 3.0]], [[]]], pa.list_(pa.list_(pa.float32()))),
        "sl": pa.array([[["a"]], None], pa.list_(pa.list_(pa.string())))})
    specs = [ColumnSpec("c", INT64, 0), ColumnSpec("fl", FLOAT, 2), ColumnSpec("sl", BYTES, 2)]
    first, second = encode_examples(batch, specs, "SequenceExample").to_pylist()
    seq = tf.train.SequenceExample.FromString(first)
    assert list(seq.context.feature["c"].int64_list.value) == [1]
    steps = seq.feature_lists.feature_list["fl"].feature
    assert [list(s.float_list.value) for s in steps] == [[1.0], [2.0, 3.0]]
    context, lists = decode_sequence_example(second)
    assert context["c"][1].tolist() == [2]
    assert [s.tolist() for s in lists["fl"][1]] == [[]] and "sl" not in lists


def test_null_elements_are_an_error_naming_the_column():
    batch = pa.record_batch({"arr": pa.array([[1.0, None]], pa.list_(pa.float64()))})
    with pytest.raises(TFRecordError, match="'arr'"):
        encode_examples(batch, [ColumnSpec("arr", FLOAT, 1)])


def test_corruption_is_reported_with_offset():
    data = bytearray(frame(b"first") + frame(b"second") + frame(b"third"))
    second = len(frame(b"first"))
    good = list(open_records(io.BytesIO(bytes(data)), "f"))
    assert good == [b"first", b"second", b"third"]
    bad = bytearray(data)
    bad[second + 12] ^= 1  # data byte of the second record
    with pytest.raises(TFRecordCorruptError, match=f"f at byte offset {second}: data checksum"):
        list(open_records(io.BytesIO(bytes(bad)), "f"))
    bad = bytearray(data)
    bad[second + 2] ^= 1  # its length
    with pytest.raises(TFRecordCorruptError, match="length checksum"):
        list(open_records(io.BytesIO(bytes(bad)), "f"))
    with pytest.raises(TFRecordCorruptError, match="truncated"):
        list(open_records(io.BytesIO(bytes(data[:-3])), "f"))
    assert list(open_records(io.BytesIO(gzip.compress(bytes(data))), "g")) == good


def _records(batch, specs):
    return [bytes(r) for r in encode_examples(batch, specs).to_pylist()]


def test_uniform_examples_decode_at_once_like_one_by_one():
    rng = np.random.default_rng(0)
    images = rng.random((50, 6), dtype=np.float32)
    # labels of different varint widths, the same width in each row's list
    labels = np.array([[i % 10, 200 + i] if i % 2 else [200 + i, i % 10] for i in range(50)])
    batch = pa.record_batch({
        "image": pa.FixedSizeListArray.from_arrays(pa.array(images.ravel()), 6),
        "pair": pa.array(labels.tolist(), pa.list_(pa.int64())),
        "label": pa.array(np.arange(50) % 10, pa.int64())})
    specs = [ColumnSpec("image", FLOAT, 1), ColumnSpec("pair", INT64, 1),
             ColumnSpec("label", INT64, 0)]
    records = _records(batch, specs)
    uniform = decode_uniform_examples(records)
    assert uniform is not None and set(uniform) == {"image", "pair", "label"}
    one_by_one = [decode_example(r) for r in records]
    for name, (kind, values) in uniform.items():
        assert kind == one_by_one[0][name][0]
        np.testing.assert_array_equal(values, np.stack([d[name][1] for d in one_by_one]))
    np.testing.assert_array_equal(uniform["image"][1], images)
    np.testing.assert_array_equal(uniform["pair"][1], labels)


def test_examples_of_other_layouts_are_left_to_the_one_by_one_decoder():
    def records(**columns):
        batch = pa.record_batch(columns)
        specs = [ColumnSpec(k, FLOAT if pa.types.is_floating(v.type) or (
            pa.types.is_list(v.type) and pa.types.is_floating(v.type.value_type)) else
            BYTES if pa.types.is_binary(v.type) else INT64, int(pa.types.is_list(v.type)))
            for k, v in columns.items()]
        return _records(batch, specs)

    assert decode_uniform_examples([]) is None
    # different lengths, a bytes feature, a feature missing from one record
    assert decode_uniform_examples(records(x=pa.array([[1.0], [1.0, 2.0]],
                                                      pa.list_(pa.float32())))) is None
    assert decode_uniform_examples(records(b=pa.array([b"ab", b"cd"]))) is None
    assert decode_uniform_examples(records(x=pa.array([1.0, None], pa.float32()),
                                           y=pa.array([3.0, 4.0], pa.float32()))) is None
    # same lengths, but varints of different widths where the other record has two values
    swapped = records(v=pa.array([[300, 1], [1, 1, 1]], pa.list_(pa.int64())))
    assert len(swapped[0]) == len(swapped[1])
    assert decode_uniform_examples(swapped) is None
    # same length, same layout, a different feature name
    renamed = records(ab=pa.array([1], pa.int64())) + records(cd=pa.array([1], pa.int64()))
    assert decode_uniform_examples(renamed) is None
    assert decode_uniform_examples([b"\x0a\x05garbage"] * 2) is None
