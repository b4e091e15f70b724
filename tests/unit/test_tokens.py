"""tfspark.fs.tokens without a JVM: Hadoop's vint/vlong/Text encodings, token URL strings,
reading token storage files (bytes that Hadoop 3.5.0 wrote, kept here as hex), and that token
secrets stay out of reprs and error messages."""
from __future__ import annotations

import base64
import random
import subprocess
import sys

import pytest

from tfspark.errors import FileSystemError
from tfspark.fs.tokens import (HDFS_DELEGATION_KIND, IdentifierInfo, Token, decode_identifier,
                               decode_text, decode_vint, decode_vlong, encode_text, encode_vint,
                               encode_vlong, read_token_file)

# Written by Hadoop 3.5.0 (pyspark's hadoop-client-api) through Py4J: an HDFS
# DelegationTokenIdentifier(owner=alice, renewer=yarn, realUser=bob, issueDate=1700000000123,
# maxDate=1700604800123, sequenceNumber=70000, masterKeyId=-5) in a Token with password
# b"pw-secret-1", kind HDFS_DELEGATION_TOKEN, service ha-hdfs:nn, added to a Credentials under
# alias ha-hdfs:nn with a secret key sk = b"TOPSECRETKEY", then writeTokenStorageToStream.
IDENT = bytes.fromhex("0005616c696365047961726e03626f628a018bcfe5687b8a018bf3f1ec7b8d011170fb")
PASSWORD = b"pw-secret-1"
SECRET_KEY = b"TOPSECRETKEY"
HADOOP_WRITABLE = bytes.fromhex(
    "4844545300010a68612d686466733a6e6e230005616c696365047961726e03626f628a018bcfe5687b8a018b"
    "f3f1ec7b8d011170fb0b70772d7365637265742d3115484446535f44454c45474154494f4e5f544f4b454e0a"
    "68612d686466733a6e6e0102736b0c544f505345435245544b4559")
HADOOP_PROTOBUF = bytes.fromhex(
    "4844545301790a630a0a68612d686466733a6e6e12550a230005616c696365047961726e03626f628a018bcf"
    "e5687b8a018bf3f1ec7b8d011170fb120b70772d7365637265742d311a15484446535f44454c45474154494f"
    "4e5f544f4b454e220a68612d686466733a6e6e12120a02736b1a0c544f505345435245544b4559")
# ...and that token's Token.encodeToUrlString():
HADOOP_URL_STRING = ("IwAFYWxpY2UEeWFybgNib2KKAYvP5Wh7igGL8_Hse40BEXD7C3B3LXNlY3JldC0xFUhERlNfREVM"
                     "RUdBVElPTl9UT0tFTgpoYS1oZGZzOm5u")


def hdfs_token(alias=None):
    return Token(IDENT, PASSWORD, HDFS_DELEGATION_KIND, "ha-hdfs:nn", alias)


def secret_forms(secret: bytes):
    """Every way a secret could leak into text."""
    return [repr(secret), secret.hex(), secret.hex(" "), base64.b64encode(secret).decode(),
            base64.urlsafe_b64encode(secret).decode().rstrip("="),
            secret.decode("latin-1"), str(list(secret))]


def write(tmp_path, data: bytes, name="tokens"):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


# --- WritableUtils vint/vlong and Text -------------------------------------------------------

BOUNDARIES = sorted({v for k in range(0, 64, 8) for base in (1 << k, -(1 << k))
                     for v in (base - 1, base, base + 1)}
                    | {-(1 << 63), -(1 << 63) + 1, (1 << 63) - 1, (1 << 63) - 2,
                       -113, -112, -111, -1, 0, 1, 126, 127, 128, -(1 << 31), (1 << 31) - 1})


@pytest.mark.parametrize("value", BOUNDARIES)
def test_a_vlong_reads_back_as_written_at_every_size_boundary(value):
    raw = encode_vlong(value)
    assert decode_vlong(raw) == (value, len(raw))
    assert decode_vlong(b"\x01" + raw + b"\xff", 1) == (value, 1 + len(raw))
    magnitude = ~value if value < 0 else value
    expected_len = 1 if -112 <= value <= 127 else 1 + (magnitude.bit_length() + 7) // 8
    assert len(raw) == expected_len


def test_a_vlong_takes_one_byte_exactly_from_minus_112_to_127():
    for value in range(-112, 128):
        assert encode_vlong(value) == bytes([value & 0xFF])
    assert len(encode_vlong(-113)) == 2 and len(encode_vlong(128)) == 2


def test_vlongs_match_the_bytes_hadoop_wrote():
    # from the identifier above: issueDate, maxDate, sequenceNumber, masterKeyId
    assert encode_vlong(1700000000123).hex() == "8a018bcfe5687b"
    assert encode_vlong(1700604800123).hex() == "8a018bf3f1ec7b"
    assert encode_vint(70000).hex() == "8d011170"
    assert encode_vint(-5).hex() == "fb"
    assert encode_vlong(-113).hex() == "8770"  # one's complement 112, negative length byte
    assert encode_vlong(-(1 << 63)).hex() == "807fffffffffffffff"
    assert encode_vlong((1 << 63) - 1).hex() == "887fffffffffffffff"


def test_a_vint_must_fit_in_a_java_int():
    assert decode_vint(encode_vint((1 << 31) - 1))[0] == (1 << 31) - 1
    assert decode_vint(encode_vint(-(1 << 31)))[0] == -(1 << 31)
    with pytest.raises(ValueError):
        encode_vint(1 << 31)
    with pytest.raises(ValueError):
        decode_vint(encode_vlong(1 << 31))
    with pytest.raises(ValueError):
        encode_vlong(1 << 63)


def test_a_cut_off_vlong_is_an_error_not_a_wrong_value():
    raw = encode_vlong(1700000000123)
    for cut in range(len(raw)):
        with pytest.raises(ValueError, match="truncated"):
            decode_vlong(raw[:cut])


def test_text_is_a_byte_length_then_utf8():
    for value in ["", "alice", "ä€😀", "x" * 300]:
        raw = encode_text(value)
        utf8 = value.encode()
        assert raw == encode_vint(len(utf8)) + utf8
        assert decode_text(raw) == (value, len(raw))


# --- Token and its URL string ----------------------------------------------------------------

def test_url_string_is_exactly_what_hadoop_encodes():
    assert hdfs_token().url_string() == HADOOP_URL_STRING


def test_url_strings_are_url_safe_unpadded_and_read_back_for_every_length():
    rng = random.Random(7)
    for n in range(40):
        token = Token(bytes(rng.randrange(256) for _ in range(n)),
                      bytes(rng.randrange(256) for _ in range(n * 7 % 200)),
                      "kind-ä", f"svc:{n}")
        text = token.url_string()
        assert not set(text) & set("+/=\n\r ")
        assert Token.from_url_string(text) == token


def test_from_url_string_takes_hadoop_strings_and_the_standard_alphabet_with_padding():
    token = Token.from_url_string(HADOOP_URL_STRING)
    assert token == hdfs_token()
    assert token.alias is None
    odd = Token(b"\xff\xff\xfb\xff\xbf", b"\xfb\xff", "k", "s")  # "Bf//+/+/...==" in base64
    standard = base64.b64encode(odd.writable()).decode()
    assert {"+", "/", "="} <= set(standard)
    assert Token.from_url_string(standard) == odd
    assert Token.from_url_string(odd.url_string()) == odd


def test_from_url_string_rejects_garbage_without_echoing_it():
    for bad in ["!!!notbase64", HADOOP_URL_STRING[:-6], HADOOP_URL_STRING + "AAAA", "A"]:
        with pytest.raises(FileSystemError, match="not a Hadoop token URL string") as info:
            Token.from_url_string(bad)
        assert bad not in str(info.value)


def test_repr_shows_kind_service_and_identifier_fields_but_never_the_secrets():
    token = hdfs_token(alias="ha-hdfs:nn")
    shown = [repr(token), str(token), repr([token]), f"{token}"]
    for text in shown:
        for secret in (PASSWORD, IDENT):
            for form in secret_forms(secret):
                assert form not in text
        assert token.url_string() not in text
        assert "pw-secret" not in text
    text = repr(token)
    for part in ["HDFS_DELEGATION_TOKEN", "ha-hdfs:nn", "alice", "yarn", "bob",
                 "2023-11-14T22:13:20+00:00", "2023-11-21T22:13:20+00:00"]:
        assert part in text


def test_repr_of_a_token_whose_identifier_does_not_decode_still_hides_it():
    token = Token(b"opaque-identifier", b"opaque-password", "kms-dt-ish", "kms://x")
    text = repr(token)
    assert "opaque" not in text and "kms://x" in text


# --- identifiers -----------------------------------------------------------------------------

def test_decode_identifier_gives_owner_renewer_dates_and_sequence_number():
    info = decode_identifier(hdfs_token())
    assert info == IdentifierInfo(owner="alice", renewer="yarn", real_user="bob",
                                  issue_date=1700000000123, max_date=1700604800123,
                                  sequence_number=70000, master_key_id=-5)
    assert info.issue_datetime.isoformat() == "2023-11-14T22:13:20.123000+00:00"
    assert info.max_datetime.timestamp() == 1700604800.123


def test_webhdfs_kinds_carry_the_same_identifier():
    for kind in ["WEBHDFS delegation", "SWEBHDFS delegation"]:
        assert decode_identifier(Token(IDENT, PASSWORD, kind, "h:9871")).owner == "alice"


def test_decode_identifier_is_none_for_other_kinds_and_for_bytes_that_do_not_parse():
    assert decode_identifier(Token(IDENT, PASSWORD, "RM_DELEGATION_TOKEN", "rm")) is None
    for ident in [b"", b"\x01" + IDENT[1:], IDENT[:-3], b"\x00\x7f"]:
        assert decode_identifier(Token(ident, PASSWORD, HDFS_DELEGATION_KIND, "s")) is None


# --- token storage files ---------------------------------------------------------------------

@pytest.mark.parametrize("data", [HADOOP_WRITABLE, HADOOP_PROTOBUF], ids=["writable", "protobuf"])
def test_reads_the_tokens_of_a_file_hadoop_wrote_and_none_of_its_secret_keys(tmp_path, data):
    tokens = read_token_file(write(tmp_path, data))
    assert tokens == [hdfs_token(alias="ha-hdfs:nn")]
    for token in tokens:
        assert SECRET_KEY not in token.identifier + token.password
    assert decode_identifier(tokens[0]).owner == "alice"


def test_reads_a_path_object_and_an_empty_credentials(tmp_path):
    path = tmp_path / "empty-creds"
    path.write_bytes(b"HDTS\x00" + encode_vint(0) + encode_vint(0))
    assert read_token_file(path) == []
    path.write_bytes(b"HDTS\x01\x00")  # an empty CredentialsProto
    assert read_token_file(path) == []


def _pb_field(number: int, payload: bytes) -> bytes:
    def varint(n):
        out = bytearray()
        while True:
            out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
            n >>= 7
            if not n:
                return bytes(out)
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def test_the_protobuf_reader_skips_fields_it_does_not_know(tmp_path):
    token = (_pb_field(1, b"id") + _pb_field(2, b"pw") + b"\x28\x96\x01"  # 5: varint 150
             + _pb_field(3, b"K") + b"\x3d\x00\x00\x00\x00" + _pb_field(4, b"S"))  # 7: fixed32
    kv = _pb_field(1, b"alias") + b"\x21" + bytes(8) + _pb_field(2, token)  # 4: fixed64
    message = _pb_field(1, kv) + _pb_field(9, b"future") + _pb_field(2, _pb_field(1, b"sk"))
    path = write(tmp_path, b"HDTS\x01" + bytes([len(message)]) + message)
    assert read_token_file(path) == [Token(b"id", b"pw", "K", "S", "alias")]


@pytest.mark.parametrize("data, problem", [
    (b"", "the file is empty"),
    (b"HDT", "truncated"),
    (b"HDTS", "truncated"),
    (b"PK\x03\x04rest-of-a-zip", "bad header"),
    (b"HDTS\x02" + HADOOP_PROTOBUF[5:], "unknown format version 2"),
    (b"HDTS\xff", "unknown format version 255"),
    (HADOOP_WRITABLE[:40], "truncated"),
    (HADOOP_PROTOBUF[:-1], "truncated"),
])
def test_a_bad_file_raises_an_error_naming_the_path_and_the_problem(tmp_path, data, problem):
    path = write(tmp_path, data, "my-token-file")
    with pytest.raises(FileSystemError) as info:
        read_token_file(path)
    message = str(info.value)
    assert message.startswith(f"could not read token file {path}: ")
    assert problem in message
    assert info.value.reason == "io"


def test_no_cut_or_corrupted_file_leaks_token_bytes_or_fails_other_than_cleanly(tmp_path):
    rng = random.Random(3)
    cases = [data[:cut] for data in (HADOOP_WRITABLE, HADOOP_PROTOBUF)
             for cut in range(len(data))]
    for _ in range(300):
        data = bytearray(rng.choice([HADOOP_WRITABLE, HADOOP_PROTOBUF]))
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(5, len(data))] = rng.randrange(256)
        cases.append(bytes(data))
    path = write(tmp_path, b"")
    for i, data in enumerate(cases):
        with open(path, "wb") as fh:
            fh.write(data)
        try:
            read_token_file(path)
        except FileSystemError as e:
            message = str(e)
            assert path in message
            for secret in (PASSWORD, SECRET_KEY, IDENT):
                for form in secret_forms(secret):
                    assert form not in message
        else:
            assert i >= len(HADOOP_WRITABLE) + len(HADOOP_PROTOBUF), "a cut file was read"


def test_a_missing_file_is_not_found(tmp_path):
    path = str(tmp_path / "nope")
    with pytest.raises(FileSystemError, match="could not read token file .*nope") as info:
        read_token_file(path)
    assert info.value.reason == "not_found"


def test_the_module_imports_neither_pyspark_nor_tensorflow():
    code = ("import sys, tfspark.fs.tokens; "
            "print(sorted(m for m in ('pyspark', 'tensorflow', 'py4j') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"
