"""Hadoop delegation tokens, read from the token file YARN gives a container
(``$HADOOP_TOKEN_FILE_LOCATION``), so WebHDFS can be reached on a Kerberized cluster with
``?delegation=<token.url_string()>`` where no Kerberos ticket is at hand.

Pure Python and stdlib only (no JVM, no protobuf package): a TF node's process reads the file
that ``org.apache.hadoop.security.Credentials`` wrote, in either of its formats:

* ``"HDTS"``, version byte 0 (``WRITABLE``, Hadoop's default): a vint count of tokens, each an
  alias Text and a Token Writable, then a vint count of secret keys, each an alias Text and a
  vint-length byte string;
* ``"HDTS"``, version byte 1 (``PROTOBUF``): one length-delimited ``CredentialsProto``
  (``tokens = 1``, ``secrets = 2``, both ``CredentialsKVProto {alias = 1; token = 2;
  secret = 3}``; ``TokenProto {identifier = 1; password = 2; kind = 3; service = 4}``).

Secret keys are skipped, never copied out; the file's bytes are zeroed once parsed. Token
passwords and identifiers never appear in a repr or an error message.
"""
from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import List, Optional, Tuple, Union

from tfspark.fs.errors import error, translated
from tfspark.protowire import WireError, fields, read_varint

__all__ = ["Token", "IdentifierInfo", "read_token_file", "write_token_file", "decode_identifier",
           "TOKEN_FILE_ENV", "HDFS_DELEGATION_KIND", "encode_vlong", "decode_vlong",
           "encode_vint", "decode_vint", "encode_text", "decode_text"]

#: Where YARN (and ``spark-submit`` with Kerberos) tells a process its token file lies.
TOKEN_FILE_ENV = "HADOOP_TOKEN_FILE_LOCATION"
HDFS_DELEGATION_KIND = "HDFS_DELEGATION_TOKEN"

#: Kinds whose identifier is an AbstractDelegationTokenIdentifier (the same bytes for the
#: NameNode's token whether fetched over RPC, WebHDFS or SWebHDFS).
_DELEGATION_KINDS = frozenset({HDFS_DELEGATION_KIND, "WEBHDFS delegation",
                               "SWEBHDFS delegation"})
_MAGIC = b"HDTS"
_WRITABLE, _PROTOBUF = 0, 1
_TEXT_MAX = 1024 * 1024  # Hadoop's Text.DEFAULT_MAX_LEN, which identifier fields must keep to

Buffer = Union[bytes, bytearray, memoryview]


class _Malformed(ValueError):
    """The bytes do not parse; the text says where, never what the bytes were."""


# --- Hadoop's WritableUtils variable-length integers and Text ---------------------------------

def encode_vlong(value: int) -> bytes:
    """Hadoop's ``WritableUtils.writeVLong``: -112..127 in one byte, else a length byte (which
    also carries the sign) and the big-endian magnitude (one's complement when negative)."""
    if not -(1 << 63) <= value < (1 << 63):
        raise ValueError(f"{value} does not fit in a Java long")
    if -112 <= value <= 127:
        return bytes([value & 0xFF])
    negative = value < 0
    magnitude = ~value if negative else value
    size = (magnitude.bit_length() + 7) // 8
    prefix = (-120 if negative else -112) - size
    return bytes([prefix & 0xFF]) + magnitude.to_bytes(size, "big")


def decode_vlong(data: Buffer, pos: int = 0) -> Tuple[int, int]:
    """Inverse of :func:`encode_vlong`: ``(value, position after it)``."""
    if pos >= len(data):
        raise _Malformed("truncated (a variable-length integer is cut off)")
    first = data[pos] - 256 if data[pos] > 127 else data[pos]
    if first >= -112:
        return first, pos + 1
    negative = first < -120
    size = (-120 if negative else -112) - first
    end = pos + 1 + size
    if end > len(data):
        raise _Malformed("truncated (a variable-length integer is cut off)")
    magnitude = int.from_bytes(data[pos + 1:end], "big")
    if magnitude >= 1 << 63:  # as Java's long arithmetic would wrap it
        magnitude -= 1 << 64
    return (~magnitude if negative else magnitude), end


def encode_vint(value: int) -> bytes:
    """Hadoop's ``WritableUtils.writeVInt`` (the vlong encoding of a Java int)."""
    if not -(1 << 31) <= value < (1 << 31):
        raise ValueError(f"{value} does not fit in a Java int")
    return encode_vlong(value)


def decode_vint(data: Buffer, pos: int = 0) -> Tuple[int, int]:
    """Hadoop's ``WritableUtils.readVInt``: a vlong that must fit in a Java int."""
    value, pos = decode_vlong(data, pos)
    if not -(1 << 31) <= value < (1 << 31):
        raise _Malformed("malformed (a variable-length int is too large)")
    return value, pos


def encode_text(value: str) -> bytes:
    """Hadoop's ``Text.write``: vint byte length, then UTF-8 (surrogateescape, so a string
    read by :func:`decode_text` from invalid UTF-8 writes back the same bytes)."""
    raw = value.encode("utf-8", "surrogateescape")
    return encode_vint(len(raw)) + raw


def decode_text(data: Buffer, pos: int = 0, max_len: Optional[int] = None) -> Tuple[str, int]:
    """Hadoop's ``Text.readFields``: ``(string, position after it)``."""
    raw, pos = _read_sized(data, pos, "a text")
    if max_len is not None and len(raw) > max_len:
        raise _Malformed("malformed (a text is longer than Hadoop allows)")
    return bytes(raw).decode("utf-8", "surrogateescape"), pos


def _read_sized(data: Buffer, pos: int, what: str) -> Tuple[memoryview, int]:
    """A vint length and that many bytes, as a view (no copy)."""
    size, pos = decode_vint(data, pos)
    if size < 0:
        raise _Malformed(f"malformed ({what} has a negative length)")
    if pos + size > len(data):
        raise _Malformed(f"truncated ({what} is cut off)")
    return memoryview(data)[pos:pos + size], pos + size


# --- tokens -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class IdentifierInfo:
    """What a delegation token's identifier says (Hadoop's AbstractDelegationTokenIdentifier).
    ``max_date`` is the end of the token's renewable life, not its next expiry (that lives only
    on the NameNode). Dates are epoch milliseconds; 0 means unset."""
    owner: str
    renewer: str
    real_user: str
    issue_date: int
    max_date: int
    sequence_number: int
    master_key_id: int

    @property
    def issue_datetime(self) -> Optional[datetime]:
        return _datetime(self.issue_date)

    @property
    def max_datetime(self) -> Optional[datetime]:
        return _datetime(self.max_date)


def _datetime(millis: int) -> Optional[datetime]:
    try:
        return datetime.fromtimestamp(millis / 1000, tz=timezone.utc) if millis > 0 else None
    except (OverflowError, OSError, ValueError):
        return None


@dataclass(frozen=True, repr=False)
class Token:
    """One Hadoop token (``org.apache.hadoop.security.token.Token``). ``identifier`` and
    ``password`` are what a server checks: they never show in ``repr``/``str``. ``alias`` is
    the token's key in the Credentials it was read from (None when built otherwise)."""
    identifier: bytes = field(repr=False)
    password: bytes = field(repr=False)
    kind: str
    service: str
    alias: Optional[str] = None

    def writable(self) -> bytes:
        """The token's Writable form (``Token.write``): what ``url_string`` encodes."""
        return (encode_vint(len(self.identifier)) + bytes(self.identifier)
                + encode_vint(len(self.password)) + bytes(self.password)
                + encode_text(self.kind) + encode_text(self.service))

    def url_string(self) -> str:
        """Exactly Hadoop's ``Token.encodeToUrlString()`` (WebHDFS's ``delegation=``):
        commons-codec ``Base64(0, null, true)`` of the Writable form, i.e. the URL-safe
        alphabet (``-``, ``_``), no ``=`` padding, no line breaks."""
        return base64.urlsafe_b64encode(self.writable()).rstrip(b"=").decode("ascii")

    @classmethod
    def from_url_string(cls, text: str) -> "Token":
        """Inverse of :meth:`url_string` (Hadoop's ``decodeFromUrlString``); like Hadoop it
        also takes the standard alphabet and ``=`` padding."""
        problem = "not a Hadoop token URL string"
        compact = "".join(text.split()).rstrip("=").replace("+", "-").replace("/", "_")
        try:
            raw = base64.b64decode(compact + "=" * (-len(compact) % 4), altchars=b"-_",
                                   validate=True)
        except (binascii.Error, ValueError):
            raise error("io", f"{problem} (not URL-safe base64)") from None
        try:
            token, pos = _read_token(raw, 0, None)
        except _Malformed as e:
            raise error("io", f"{problem}: {e}") from None
        if pos != len(raw):
            raise error("io", f"{problem} (bytes left over after the token)")
        return token

    def __repr__(self) -> str:
        parts = [f"kind={self.kind!r}", f"service={self.service!r}"]
        if self.alias is not None:
            parts.append(f"alias={self.alias!r}")
        info = decode_identifier(self)
        if info is not None:
            parts += [f"owner={info.owner!r}", f"renewer={info.renewer!r}"]
            if info.real_user:
                parts.append(f"real_user={info.real_user!r}")
            for name, when in (("issued", info.issue_datetime), ("max_date", info.max_datetime)):
                if when is not None:
                    parts.append(f"{name}={when.isoformat(timespec='seconds')}")
            parts.append(f"sequence_number={info.sequence_number}")
        return f"Token({', '.join(parts)})"


def _read_token(data: Buffer, pos: int, alias: Optional[str]) -> Tuple[Token, int]:
    """Hadoop's ``Token.readFields``: vint-sized identifier and password, kind and service
    Texts."""
    identifier, pos = _read_sized(data, pos, "a token identifier")
    password, pos = _read_sized(data, pos, "a token password")
    kind, pos = decode_text(data, pos)
    service, pos = decode_text(data, pos)
    return Token(bytes(identifier), bytes(password), kind, service, alias), pos


def decode_identifier(token: Token) -> Optional[IdentifierInfo]:
    """Owner, renewer and dates of an HDFS delegation token (also its WebHDFS/SWebHDFS kinds);
    None for other kinds or identifier bytes that do not parse. Layout (Hadoop's
    ``AbstractDelegationTokenIdentifier.write``): version byte 0; owner, renewer, realUser
    Texts; issueDate, maxDate vlongs; sequenceNumber, masterKeyId vints."""
    if token.kind not in _DELEGATION_KINDS:
        return None
    data = token.identifier
    try:
        if not data or data[0] != 0:
            return None
        owner, pos = decode_text(data, 1, _TEXT_MAX)
        renewer, pos = decode_text(data, pos, _TEXT_MAX)
        real_user, pos = decode_text(data, pos, _TEXT_MAX)
        issue_date, pos = decode_vlong(data, pos)
        max_date, pos = decode_vlong(data, pos)
        sequence_number, pos = decode_vint(data, pos)
        master_key_id, pos = decode_vint(data, pos)
    except _Malformed:
        return None
    return IdentifierInfo(owner, renewer, real_user, issue_date, max_date, sequence_number,
                          master_key_id)


# --- the token storage file -------------------------------------------------------------------

def read_token_file(path: Union[str, "os.PathLike[str]"]) -> List[Token]:
    """The tokens in a Hadoop token storage file (``Credentials.writeTokenStorageFile``, either
    format), in file order. Raises :class:`~tfspark.errors.FileSystemError` naming ``path`` and
    what is wrong (missing, bad magic, unknown version, truncated)."""
    shown = os.fspath(path)
    buf = bytearray()
    try:
        with translated("read token file", shown):
            with open(path, "rb", buffering=0) as f:  # unbuffered: no hidden copy of secrets
                buf = bytearray(os.fstat(f.fileno()).st_size)
                got = 0
                with memoryview(buf) as view:
                    while got < len(buf):
                        n = f.readinto(view[got:])
                        if not n:
                            break
                        got += n
        with memoryview(buf)[:got] as data:
            return _parse_storage(data)
    except _Malformed as e:
        raise error("io", f"could not read token file {shown}: {e}") from None
    finally:
        buf[:] = bytes(len(buf))


def write_token_file(path: Union[str, "os.PathLike[str]"], tokens: List[Token]) -> None:
    """Write ``tokens`` as Hadoop's token storage file (``HDTS``, the Writable format, no
    secret keys) at ``path``: created 0600 beside it and renamed into place, so a reader sees
    the old file or the new one, never a part, and nobody else ever can read it."""
    body = bytearray(_MAGIC + bytes([_WRITABLE]) + encode_vint(len(tokens)))
    for number, token in enumerate(tokens):
        body += encode_text(token.alias if token.alias is not None else
                            f"{token.kind}:{token.service}:{number}")
        body += token.writable()
    body += encode_vint(0)
    target = os.fspath(path)
    partial = f"{target}.{os.getpid()}.partial"
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "wb") as out:
            out.write(body)
        os.replace(partial, target)
    finally:
        body[:] = bytes(len(body))
        if os.path.exists(partial):
            os.unlink(partial)


def _parse_storage(data: memoryview) -> List[Token]:
    head = bytes(data[:len(_MAGIC)])
    if head != _MAGIC[:len(head)]:
        raise _Malformed("bad header: not a Hadoop token storage file "
                         "(it does not start with 'HDTS')")
    if len(data) <= len(_MAGIC):
        raise _Malformed("truncated (shorter than its header)" if data else "the file is empty")
    version = data[len(_MAGIC)]
    if version == _WRITABLE:
        return _parse_writable(data, len(_MAGIC) + 1)
    if version == _PROTOBUF:
        return _parse_protobuf(data, len(_MAGIC) + 1)
    raise _Malformed(f"unknown format version {version} (Hadoop writes 0 = Writable, "
                     "1 = protobuf)")


def _parse_writable(data: Buffer, pos: int) -> List[Token]:
    """``Credentials.readFields``: the tokens, then the secret keys (skipped)."""
    count, pos = decode_vint(data, pos)
    tokens = []
    for _ in range(max(count, 0)):
        alias, pos = decode_text(data, pos)
        token, pos = _read_token(data, pos, alias)
        tokens.append(token)
    secrets, pos = decode_vint(data, pos)
    for _ in range(max(secrets, 0)):
        _, pos = decode_text(data, pos)
        _, pos = _read_sized(data, pos, "a secret key")
    return tokens


def _pb_fields(data: Buffer, pos: int, end: int):
    """Yield ``(field number, value)`` of one message in ``data[pos:end]``
    (:mod:`tfspark.protowire`): a view for length-delimited fields (not copied, so skipped
    secrets never are), an int otherwise."""
    view = memoryview(data)
    try:
        for number, wire, value in fields(view, pos, end):
            if wire == 2:
                value = view[value[0]:value[1]]
            elif wire in (1, 5):
                value = int.from_bytes(value, "little")
            yield number, value
    except WireError as e:
        raise _Malformed(f"truncated or malformed protobuf ({e})") from None


def _pb_string(value: object, what: str) -> str:
    if not isinstance(value, memoryview):
        raise _Malformed(f"malformed ({what} is not a string)")
    return bytes(value).decode("utf-8", "surrogateescape")


def _parse_protobuf(data: Buffer, pos: int) -> List[Token]:
    """``CredentialsProto.parseDelimitedFrom``: the ``tokens`` entries; ``secrets`` skipped."""
    try:
        size, pos = read_varint(data, pos)
    except WireError:
        raise _Malformed("truncated (the protobuf message's length is cut off)") from None
    if pos + size > len(data):
        raise _Malformed("truncated (the protobuf message is cut off)")
    tokens = []
    for number, entry in _pb_fields(data, pos, pos + size):
        if number != 1:  # 2 = secrets: not even looked into
            continue
        if not isinstance(entry, memoryview):
            raise _Malformed("malformed (a token entry is not a message)")
        alias, token = None, None
        for kv_number, value in _pb_fields(entry, 0, len(entry)):
            if kv_number == 1:
                alias = _pb_string(value, "a token alias")
            elif kv_number == 2:
                token = value
        if alias is None or not isinstance(token, memoryview):
            raise _Malformed("malformed (a token entry lacks its alias or token)")
        tokens.append(_parse_token_proto(token, alias))
    return tokens


def _parse_token_proto(data: memoryview, alias: str) -> Token:
    values: dict = {}
    for number, value in _pb_fields(data, 0, len(data)):
        if number in (1, 2, 3, 4):
            if not isinstance(value, memoryview):
                raise _Malformed("malformed (a token field has the wrong wire type)")
            values[number] = value
    if len(values) < 4:
        raise _Malformed("malformed (a token lacks one of identifier, password, kind, "
                         "service)")
    return Token(bytes(values[1]), bytes(values[2]), _pb_string(values[3], "a token kind"),
                 _pb_string(values[4], "a token service"), alias)
