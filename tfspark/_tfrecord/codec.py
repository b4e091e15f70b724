"""TFRecord framing and the ``tf.train.Example`` / ``SequenceExample`` wire format, by hand.

Pure code over bytes, numpy and Arrow: no Spark, no TensorFlow, no I/O beyond the file objects
it is handed.  :mod:`tfspark.tfrecord` runs it inside Spark tasks; TensorFlow is never imported.

Framing of one record (TFRecord)::

    uint64 length | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)

all little-endian, ``masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8 (mod 2**32)``.

Wire format written (proto3, fields in tag order)::

    Example          { Features features = 1; }
    SequenceExample  { Features context = 1; FeatureLists feature_lists = 2; }
    Features         { map<string, Feature> feature = 1; }          // entry: key=1, value=2
    FeatureLists     { map<string, FeatureList> feature_list = 1; }
    FeatureList      { repeated Feature feature = 1; }
    Feature          { oneof { BytesList bytes_list = 1; FloatList float_list = 2;
                               Int64List int64_list = 3; } }
    BytesList        { repeated bytes value = 1; }
    FloatList        { repeated float value = 1 [packed]; }
    Int64List        { repeated int64 value = 1 [packed]; }

The encoder works on whole Arrow record batches: every layer (payload, ``Feature``, map entry,
message) is built for all rows at once with numpy (length prefixes as varint matrices) and
``pyarrow.compute.binary_join_element_wise``, so the per-row Python cost is one CRC call.
The decoder parses records one by one in Python (packed numbers through numpy), except for
Examples that all share one byte layout (fixed-shape numeric features: the common case), which
it decodes as one 2-D byte array (:func:`decode_uniform_examples`).
"""
from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from typing import IO, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tfspark.errors import TFRecordCorruptError, TFRecordError
from tfspark.protowire import fields

try:  # C implementation (SSE4.2 / ARM CRC instructions); several GB/s
    import google_crc32c as _google_crc32c

    def crc32c(data) -> int:
        """CRC-32C (Castagnoli) of a bytes-like object."""
        return _google_crc32c.value(data)
except ImportError:  # pragma: no cover - exercised only without google-crc32c
    _google_crc32c = None

    def _make_table() -> List[int]:
        table = []
        for i in range(256):
            crc = i
            for _ in range(8):
                crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
            table.append(crc)
        return table

    _TABLE = _make_table()

    def crc32c(data) -> int:
        """CRC-32C (Castagnoli) of a bytes-like object (slow pure-Python fallback)."""
        crc = 0xFFFFFFFF
        table = _TABLE
        for byte in bytes(data):
            crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
        return crc ^ 0xFFFFFFFF


INT64, FLOAT, BYTES = "int64", "float", "bytes"
KIND_TAGS = {BYTES: 0x0A, FLOAT: 0x12, INT64: 0x1A}  # Feature oneof field tags
TAG_KINDS = {1: BYTES, 2: FLOAT, 3: INT64}
_MASK_DELTA = 0xA282EAD8
_EMPTY = pa.scalar(b"", pa.large_binary())
GZIP_MAGIC = b"\x1f\x8b"


def masked_crc(data) -> int:
    """The TFRecord checksum of ``data``: its CRC-32C, rotated right by 15 bits, plus a delta."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame(record: bytes) -> bytes:
    """One TFRecord: ``record`` with its length header and both checksums."""
    header = struct.pack("<Q", len(record))
    return b"".join((header, struct.pack("<I", masked_crc(header)), record,
                     struct.pack("<I", masked_crc(record))))


# ---------------------------------------------------------------------------------------------
# vectorized building blocks: binary arrays with int64 offsets


def _binary(data: np.ndarray, offsets: np.ndarray) -> pa.LargeBinaryArray:
    """A large_binary array over ``data`` (uint8) with ``offsets`` (int64, n + 1), no copy."""
    data = np.ascontiguousarray(data, dtype=np.uint8)
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    return pa.Array.from_buffers(pa.large_binary(), len(offsets) - 1,
                                 [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _offsets(arr: pa.Array) -> np.ndarray:
    """int64 offsets of a (large_)binary/string array, rebased to start at 0."""
    wide = pa.types.is_large_binary(arr.type) or pa.types.is_large_string(arr.type)
    offs = np.frombuffer(arr.buffers()[1], dtype=np.int64 if wide else np.int32)
    offs = offs[arr.offset:arr.offset + len(arr) + 1].astype(np.int64)
    return offs - offs[0]


def _lengths(arr: pa.Array) -> np.ndarray:
    return np.diff(_offsets(arr))


def _data(arr: pa.Array) -> pa.Buffer:
    """The value bytes of a binary array, starting at its first value."""
    wide = pa.types.is_large_binary(arr.type) or pa.types.is_large_string(arr.type)
    start = int(np.frombuffer(arr.buffers()[1], dtype=np.int64 if wide else np.int32)[
        arr.offset]) if len(arr) else 0
    data = arr.buffers()[2]
    if data is None:
        return pa.py_buffer(b"")
    return data.slice(start) if start else data


def _with_offsets(data: pa.Buffer, offsets: np.ndarray) -> pa.LargeBinaryArray:
    return pa.Array.from_buffers(pa.large_binary(), len(offsets) - 1,
                                 [None, pa.py_buffer(np.ascontiguousarray(offsets, np.int64)),
                                  data])


def _regroup(elements: pa.Array, counts: np.ndarray) -> pa.LargeBinaryArray:
    """Concatenate consecutive runs of ``counts[i]`` elements into one value each (no copy)."""
    bounds = np.concatenate(([0], np.cumsum(counts, dtype=np.int64)))
    return _with_offsets(_data(elements), _offsets(elements)[bounds])


def _compact(arr: pa.Array) -> pa.LargeBinaryArray:
    """``arr`` as large_binary."""
    return arr if pa.types.is_large_binary(arr.type) else arr.cast(pa.large_binary())


def _empty(n: int) -> pa.LargeBinaryArray:
    return _binary(np.zeros(0, np.uint8), np.zeros(n + 1, np.int64))


def _join(*arrays: pa.Array) -> pa.LargeBinaryArray:
    """Row-wise concatenation of same-length binary arrays."""
    if len(arrays) == 1:
        return arrays[0]
    return pc.binary_join_element_wise(*arrays, _EMPTY)


def _varint_len(values: np.ndarray) -> np.ndarray:
    """Bytes each unsigned value takes as a varint."""
    values = values.astype(np.uint64, copy=False)
    n = np.ones(values.shape, dtype=np.int64)
    for k in range(1, 10):
        n += values >= np.uint64(1 << (7 * k))
    return n


def varint_encode(values: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Varints of ``values`` (int64 as two's complement, like protobuf): (bytes, offsets)."""
    values = np.ascontiguousarray(values).astype(np.int64, copy=False).view(np.uint64)
    nbytes = _varint_len(values)
    width = int(nbytes.max()) if len(values) else 1
    shifts = (np.arange(width, dtype=np.uint64) * np.uint64(7))
    matrix = ((values[:, None] >> shifts[None, :]) & np.uint64(0x7F)).astype(np.uint8)
    cols = np.arange(width)[None, :]
    matrix |= np.where(cols < (nbytes[:, None] - 1), 0x80, 0).astype(np.uint8)
    data = matrix[cols < nbytes[:, None]]
    return data, np.concatenate(([0], np.cumsum(nbytes)))


def varint_decode(data: np.ndarray) -> np.ndarray:
    """Every varint in the uint8 array ``data``, as int64 (protobuf int64 semantics)."""
    data = np.asarray(data, dtype=np.uint8)
    if not len(data):
        return np.zeros(0, dtype=np.int64)
    ends = np.flatnonzero(data < 0x80)
    if not len(ends) or ends[-1] != len(data) - 1:
        raise ValueError("truncated varint")
    starts = np.concatenate(([0], ends[:-1] + 1))
    group = np.repeat(np.arange(len(ends)), ends - starts + 1)
    shift = ((np.arange(len(data)) - starts[group]) * 7).astype(np.uint64)
    parts = (data & 0x7F).astype(np.uint64) << shift
    return np.bitwise_or.reduceat(parts, starts).view(np.int64)


def _headers(n: int, pieces: Sequence) -> pa.LargeBinaryArray:
    """Per-row byte strings made of ``pieces``: bytes constants, or ``(tag, lengths, present)``.

    ``(tag, lengths, present)`` gives ``tag`` + varint(length) on rows where ``present`` is
    true (``present=None``: all rows) and nothing elsewhere.
    """
    blocks, masks = [], []
    for piece in pieces:
        if isinstance(piece, (bytes, bytearray)):
            if not piece:
                continue
            blocks.append(np.broadcast_to(np.frombuffer(piece, np.uint8), (n, len(piece))))
            masks.append(np.ones((n, len(piece)), dtype=bool))
            continue
        tag, lengths, present = piece
        lengths = np.asarray(lengths, dtype=np.uint64)
        nbytes = _varint_len(lengths)
        width = int(nbytes.max()) if n else 1
        shifts = np.arange(width, dtype=np.uint64) * np.uint64(7)
        matrix = ((lengths[:, None] >> shifts[None, :]) & np.uint64(0x7F)).astype(np.uint8)
        cols = np.arange(width)[None, :]
        matrix |= np.where(cols < (nbytes[:, None] - 1), 0x80, 0).astype(np.uint8)
        mask = cols < nbytes[:, None]
        tag_col = np.full((n, 1), tag, dtype=np.uint8)
        block = np.concatenate([tag_col, matrix], axis=1)
        mask = np.concatenate([np.ones((n, 1), dtype=bool), mask], axis=1)
        if present is not None:
            mask &= np.asarray(present, dtype=bool)[:, None]
        blocks.append(block)
        masks.append(mask)
    if not blocks:
        return _empty(n)
    block = np.concatenate(blocks, axis=1)
    mask = np.concatenate(masks, axis=1)
    return _binary(block[mask], np.concatenate(([0], np.cumsum(mask.sum(axis=1)))))


# ---------------------------------------------------------------------------------------------
# encoding Arrow columns


@dataclass(frozen=True)
class ColumnSpec:
    """How one column is encoded: its feature name, list kind and nesting depth.

    ``depth`` 0: a scalar (one value per Feature); 1: an array (one Feature); 2: an array of
    arrays (a FeatureList in a SequenceExample).
    """
    name: str
    kind: str
    depth: int


def kind_of_arrow(value_type: pa.DataType) -> Optional[str]:
    """The Feature list kind for an Arrow value type, or None if it has none."""
    if pa.types.is_boolean(value_type) or pa.types.is_integer(value_type):
        return INT64
    if pa.types.is_floating(value_type):
        return FLOAT
    if (pa.types.is_string(value_type) or pa.types.is_large_string(value_type)
            or pa.types.is_binary(value_type) or pa.types.is_large_binary(value_type)):
        return BYTES
    return None


def _features(values: pa.Array, counts: np.ndarray, kind: str, column: str) -> pa.Array:
    """``Feature`` bytes per slot, slot ``i`` holding the next ``counts[i]`` of ``values``."""
    if values.null_count:
        raise TFRecordError(f"column {column!r} has null elements inside an array; TFRecord "
                            "lists cannot hold nulls (fill or drop them first)")
    n = len(counts)
    bounds = np.concatenate(([0], np.cumsum(counts, dtype=np.int64)))
    if kind == FLOAT:
        floats = np.asarray(values.cast(pa.float32()).to_numpy(zero_copy_only=False),
                            dtype="<f4")
        payload = _binary(floats.view(np.uint8), bounds * 4)
    elif kind == INT64:
        ints = values.cast(pa.int64()).to_numpy(zero_copy_only=False)
        data, offs = varint_encode(ints)
        payload = _binary(data, offs[bounds])
    else:
        raw = _compact(values)
        encoded = _join(_headers(len(raw), [(0x0A, _lengths(raw), None)]), raw)
        lists = _regroup(encoded, counts)
        return _join(_headers(n, [(KIND_TAGS[BYTES], _lengths(lists), None)]), lists)
    plen = _lengths(payload)
    list_len = np.where(plen > 0, 1 + _varint_len(plen) + plen, 0)
    head = _headers(n, [(KIND_TAGS[kind], list_len, None), (0x0A, plen, plen > 0)])
    return _join(head, payload)


def _map_entries(key: str, values: pa.Array, present: np.ndarray) -> pa.Array:
    """Map entries ``{key: value}`` for present rows; empty bytes for the other rows.

    ``values`` holds one message (Feature or FeatureList) per present row.
    """
    n = len(present)
    key_bytes = key.encode("utf-8")
    key_field = bytes([0x0A]) + bytes(varint_encode(np.array([len(key_bytes)]))[0]) + key_bytes
    vlen = _lengths(values)
    inner = len(key_field) + 1 + _varint_len(vlen) + vlen
    head = _headers(len(values), [(0x0A, inner, None), key_field, (0x12, vlen, None)])
    entries = _join(head, values)
    lengths = np.zeros(n, dtype=np.int64)
    lengths[present] = _lengths(entries)
    return _with_offsets(_data(entries), np.concatenate(([0], np.cumsum(lengths))))


def encode_column(arr: pa.Array, spec: ColumnSpec) -> pa.Array:
    """Map-entry bytes of one column for every row (empty where the value is null)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = pa.concat_arrays(arr.chunks) if arr.num_chunks != 1 else arr.chunk(0)
    present = np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    valid = arr.filter(pa.array(present)) if arr.null_count else arr
    if spec.depth == 0:
        feats = _features(valid, np.ones(len(valid), dtype=np.int64), spec.kind, spec.name)
    elif spec.depth == 1:
        counts = pc.list_value_length(valid).to_numpy(zero_copy_only=False).astype(np.int64)
        feats = _features(valid.flatten(), counts, spec.kind, spec.name)
    else:  # FeatureList: one Feature per inner array
        outer_counts = pc.list_value_length(valid).to_numpy(zero_copy_only=False)
        inner = valid.flatten()
        if inner.null_count:
            raise TFRecordError(f"column {spec.name!r} has a null inner array; a FeatureList "
                                "cannot hold nulls (use an empty array instead)")
        counts = pc.list_value_length(inner).to_numpy(zero_copy_only=False).astype(np.int64)
        inner_feats = _features(inner.flatten(), counts, spec.kind, spec.name)
        flen = _lengths(inner_feats)
        items = _join(_headers(len(inner_feats), [(0x0A, flen, None)]), inner_feats)
        feats = _regroup(items, outer_counts.astype(np.int64))
    return _map_entries(spec.name, feats, present)


def encode_examples(batch: pa.RecordBatch, specs: Sequence[ColumnSpec],
                    record_type: str = "Example") -> pa.Array:
    """Serialized ``Example`` (or ``SequenceExample``) messages, one per row of ``batch``.

    For ``SequenceExample`` columns of depth 2 go to ``feature_lists``, the others to
    ``context``.
    """
    n = batch.num_rows
    if record_type == "SequenceExample":
        ctx = [encode_column(batch.column(s.name), s) for s in specs if s.depth < 2]
        lists = [encode_column(batch.column(s.name), s) for s in specs if s.depth == 2]
        ctx_msg = _join(*ctx) if ctx else _empty(n)
        fl_msg = _join(*lists) if lists else _empty(n)
        clen, flen = _lengths(ctx_msg), _lengths(fl_msg)
        return _join(_headers(n, [(0x0A, clen, None)]), ctx_msg,
                     _headers(n, [(0x12, flen, flen > 0)]), fl_msg)
    entries = [encode_column(batch.column(s.name), s) for s in specs]
    body = _join(*entries) if entries else _empty(n)
    return _join(_headers(n, [(0x0A, _lengths(body), None)]), body)


def frame_records(records: pa.Array) -> memoryview:
    """All ``records`` (a binary array) framed as TFRecords, as one contiguous buffer."""
    records = _compact(records)
    n = len(records)
    if n == 0:
        return memoryview(b"")
    offs = _offsets(records)
    lengths = np.diff(offs)
    data = memoryview(_data(records)).toreadonly()
    head = np.empty((n, 12), dtype=np.uint8)
    head[:, :8] = lengths.astype("<u8").view(np.uint8).reshape(n, 8)
    unique, inverse = np.unique(lengths, return_inverse=True)
    crc_unique = np.array([crc32c(struct.pack("<Q", int(v))) for v in unique], dtype=np.uint64)
    crc_head = crc_unique[inverse.reshape(-1)]
    starts = offs[:-1].tolist()
    ends = offs[1:].tolist()
    crc_data = np.fromiter((crc32c(data[s:e].tobytes()) for s, e in zip(starts, ends)),
                           dtype=np.uint64, count=n)

    def mask(c: np.ndarray) -> np.ndarray:
        return ((((c >> np.uint64(15)) | (c << np.uint64(17))) + np.uint64(_MASK_DELTA))
                & np.uint64(0xFFFFFFFF)).astype("<u4")

    head[:, 8:] = mask(crc_head).view(np.uint8).reshape(n, 4)
    tail = mask(crc_data).view(np.uint8)
    framed = _join(_binary(head.reshape(-1), np.arange(n + 1, dtype=np.int64) * 12), records,
                   _binary(tail, np.arange(n + 1, dtype=np.int64) * 4))
    return memoryview(_data(framed))[:int(_offsets(framed)[-1])]


# ---------------------------------------------------------------------------------------------
# reading records


def open_records(raw: IO[bytes], name: str) -> Iterator[bytes]:
    """Every record of a TFRecord stream, checking both CRCs; gzip streams are unpacked.

    ``name`` (the file's path) goes into :class:`TFRecordCorruptError` messages.
    """
    buffered = raw if hasattr(raw, "peek") else __import__("io").BufferedReader(raw)
    if bytes(buffered.peek(2)[:2]) == GZIP_MAGIC:
        stream: IO[bytes] = gzip.GzipFile(fileobj=buffered, mode="rb")
        where = "uncompressed byte offset"
    else:
        stream = buffered
        where = "byte offset"
    offset = 0
    read = stream.read
    while True:
        try:
            header = read(12)
        except (OSError, EOFError) as e:
            raise TFRecordCorruptError(f"corrupt TFRecord file {name} at {where} {offset}: "
                                       f"{e}") from e
        if not header:
            return
        if len(header) < 12:
            raise TFRecordCorruptError(f"corrupt TFRecord file {name} at {where} {offset}: "
                                       f"truncated record header ({len(header)} of 12 bytes)")
        length, = struct.unpack_from("<Q", header)
        if struct.unpack_from("<I", header, 8)[0] != masked_crc(header[:8]):
            raise TFRecordCorruptError(f"corrupt TFRecord file {name} at {where} {offset}: "
                                       "length checksum mismatch")
        try:
            body = read(length + 4)
        except (OSError, EOFError) as e:
            raise TFRecordCorruptError(f"corrupt TFRecord file {name} at {where} {offset}: "
                                       f"{e}") from e
        if len(body) < length + 4:
            raise TFRecordCorruptError(f"corrupt TFRecord file {name} at {where} {offset}: "
                                       f"truncated record ({len(body)} of {length + 4} bytes)")
        data = body[:length]
        if struct.unpack_from("<I", body, length)[0] != masked_crc(data):
            raise TFRecordCorruptError(f"corrupt TFRecord file {name} at {where} {offset}: "
                                       "data checksum mismatch")
        offset += 16 + length
        yield data


# ---------------------------------------------------------------------------------------------
# decoding messages


def decode_feature(buf, start: int, end: int) -> Tuple[str, object]:
    """(kind, values) of a serialized ``Feature``.

    Values: float32 numpy array, int64 numpy array or list of bytes.  A Feature with no list
    set decodes as an empty bytes list (as TensorFlow does).
    """
    kind, lo, hi = BYTES, start, start
    for field, wire, value in fields(buf, start, end):
        if wire == 2 and field in TAG_KINDS:
            kind = TAG_KINDS[field]
            lo, hi = value
    if kind == BYTES:
        return kind, [bytes(buf[a:b]) for f, w, (a, b) in fields(buf, lo, hi) if f == 1]
    if kind == FLOAT:
        chunks = []
        for f, w, value in fields(buf, lo, hi):
            if f != 1:
                continue
            chunks.append(bytes(buf[value[0]:value[1]]) if w == 2 else bytes(value))
        return kind, np.frombuffer(b"".join(chunks), dtype="<f4")
    parts: List[np.ndarray] = []
    for f, w, value in fields(buf, lo, hi):
        if f != 1:
            continue
        if w == 2:
            parts.append(varint_decode(np.frombuffer(buf[value[0]:value[1]], np.uint8)))
        else:
            parts.append(np.array([value], dtype=np.uint64).view(np.int64))
    return kind, (np.concatenate(parts) if parts else np.zeros(0, np.int64))


def _decode_map(buf, start: int, end: int, value_decoder) -> Dict[str, object]:
    out = {}
    for field, wire, (a, b) in ((f, w, v) for f, w, v in fields(buf, start, end)
                                if f == 1 and w == 2):
        key, value = "", None
        for f, w, v in fields(buf, a, b):
            if f == 1 and w == 2:
                key = bytes(buf[v[0]:v[1]]).decode("utf-8")
            elif f == 2 and w == 2:
                value = v
        out[key] = value_decoder(buf, *(value or (a, a)))
    return out


def _decode_feature_list(buf, start: int, end: int) -> Tuple[str, list]:
    feats = [decode_feature(buf, a, b) for f, w, (a, b) in fields(buf, start, end)
             if f == 1 and w == 2]
    kind = feats[0][0] if feats else None  # an empty FeatureList has no kind
    return kind, [values for _, values in feats]


def decode_example(record: bytes) -> Dict[str, Tuple[str, object]]:
    """``{name: (kind, values)}`` of a serialized ``tf.train.Example``."""
    buf = memoryview(record)
    out: Dict[str, Tuple[str, object]] = {}
    for field, wire, value in fields(buf):
        if field == 1 and wire == 2:
            out.update(_decode_map(buf, *value, decode_feature))
    return out


def _packed_spans(record: bytes) -> Optional[Dict[str, Tuple[str, int, int]]]:
    """``{name: (kind, start, end)}``: where each feature's packed numbers lie in an Example
    whose every feature is a float or int64 list with one packed field; None otherwise."""
    buf = memoryview(record)
    spans: Dict[str, Tuple[str, int, int]] = {}
    for field, wire, value in fields(buf):
        if not (field == 1 and wire == 2):
            return None
        for f, w, (a, b) in ((f, w, v) for f, w, v in fields(buf, *value)):
            if not (f == 1 and w == 2):
                return None
            key, feature = None, None
            for ef, ew, ev in fields(buf, a, b):
                if ef == 1 and ew == 2:
                    key = bytes(buf[ev[0]:ev[1]]).decode("utf-8")
                elif ef == 2 and ew == 2:
                    feature = ev
            if key is None or feature is None:
                return None
            inner = list(fields(buf, *feature))
            if len(inner) != 1 or inner[0][1] != 2 or TAG_KINDS.get(inner[0][0]) == BYTES:
                return None
            kind = TAG_KINDS[inner[0][0]]
            lists = list(fields(buf, *inner[0][2]))
            if len(lists) != 1 or lists[0][:2] != (1, 2):
                return None
            spans[key] = (kind, *lists[0][2])
    return spans


def decode_uniform_examples(records: Sequence[bytes]) -> Optional[Dict[str, Tuple[str,
                                                                                  np.ndarray]]]:
    """``{name: (kind, values of shape (rows, count))}`` for Examples that all have the byte
    layout of the first -- the same features, in the same order, each a packed float or int64
    list of the same length in every record, as a writer of fixed-shape tensors makes them --
    decoded with whole-array numpy operations; None when they do not (decode them one by one).
    """
    if not records or len({len(r) for r in records}) != 1:
        return None
    try:
        spans = _packed_spans(records[0])
    except (ValueError, IndexError, UnicodeDecodeError):
        return None  # not a valid Example: the record-by-record decoder says why
    if spans is None:
        return None
    width = len(records[0])
    grid = np.frombuffer(b"".join(records), np.uint8).reshape(len(records), width)
    skeleton = np.ones(width, bool)
    for _, a, b in spans.values():
        skeleton[a:b] = False
    if not (grid[:, skeleton] == grid[0, skeleton]).all():
        return None
    out: Dict[str, Tuple[str, np.ndarray]] = {}
    for name, (kind, a, b) in spans.items():
        region = np.ascontiguousarray(grid[:, a:b])
        if kind == FLOAT:
            out[name] = (kind, region.view("<f4").astype(np.float32, copy=False))
            continue
        count = int((region[0] < 0x80).sum())
        if b > a and not ((region[:, -1] < 0x80).all()
                          and ((region < 0x80).sum(axis=1) == count).all()):
            return None  # a varint runs across records' regions: decode them one by one
        out[name] = (kind, varint_decode(region.ravel()).reshape(len(records), count))
    return out


def decode_sequence_example(record: bytes) -> Tuple[Dict[str, Tuple[str, object]],
                                                     Dict[str, Tuple[str, list]]]:
    """(context, feature_lists) of a serialized ``tf.train.SequenceExample``.

    ``feature_lists`` maps each name to (kind, [values of each step]); kind is None for an
    empty feature list.
    """
    buf = memoryview(record)
    context: Dict[str, Tuple[str, object]] = {}
    lists: Dict[str, Tuple[str, list]] = {}
    for field, wire, value in fields(buf):
        if field == 1 and wire == 2:
            context.update(_decode_map(buf, *value, decode_feature))
        elif field == 2 and wire == 2:
            lists.update(_decode_map(buf, *value, _decode_feature_list))
    return context, lists
