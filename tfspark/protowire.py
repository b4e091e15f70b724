"""Protocol buffers' wire format, read by hand: just what tfspark decodes itself (TFRecord
``Example``s in :mod:`tfspark._tfrecord.codec`, Hadoop's ``CredentialsProto`` in
:mod:`tfspark.fs.tokens`) without a protobuf runtime. Stdlib only.

A message is a run of (tag varint, value); the tag is ``field << 3 | wire type``: 0 varint,
1 eight bytes, 2 a varint length and that many bytes, 5 four bytes.
"""
from __future__ import annotations

from typing import Iterator, Optional, Tuple


class WireError(ValueError):
    """The bytes are not a well-formed message (cut off, or a wire type not supported)."""


def read_varint(buf, pos: int) -> Tuple[int, int]:
    """(value, position after it) of the base-128 varint at ``buf[pos]``."""
    result = shift = 0
    try:
        while True:
            byte = buf[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                return result, pos
            shift += 7
            if shift > 63:
                raise WireError("a varint is too long")
    except IndexError:
        raise WireError("a varint is cut off") from None


def fields(buf, start: int = 0, end: Optional[int] = None
           ) -> Iterator[Tuple[int, int, object]]:
    """(field number, wire type, value) of the message in ``buf[start:end]``: an int for
    varints, ``(start, end)`` positions for length-delimited values (nothing copied), the raw
    bytes of fixed-size ones."""
    pos = start
    end = len(buf) if end is None else end
    while pos < end:
        key, pos = read_varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = read_varint(buf, pos)
            yield field, wire, value
            continue
        if wire == 2:
            size, pos = read_varint(buf, pos)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
        else:
            raise WireError(f"unsupported wire type {wire}")
        if pos + size > end:
            raise WireError("a field runs past the end of its message")
        yield field, wire, (pos, pos + size) if wire == 2 else buf[pos:pos + size]
        pos += size
    if pos != end:
        raise WireError("the message runs past its end")
