"""tfspark.fs.tokens reads token files that Hadoop's own ``Credentials`` wrote (pyspark's bundled
hadoop-client-api, driven through Py4J), in both formats and the default one, and encodes
tokens exactly as Hadoop's ``Token.encodeToUrlString()`` does."""
from __future__ import annotations

import os
import time

import pytest

from tfspark.fs.tokens import (HDFS_DELEGATION_KIND, Token, decode_identifier, read_token_file,
                               write_token_file)

WEEK_MS = 7 * 24 * 3600 * 1000


@pytest.fixture(scope="module")
def jvm(spark):
    return spark.sparkContext._jvm


@pytest.fixture(scope="module")
def hadoop_credentials(jvm):
    """A ``Credentials`` with three tokens (an HDFS delegation token, an SWebHDFS one and an
    opaque kind) and a secret key, and what each token is expected to read back as."""
    hadoop = jvm.org.apache.hadoop
    Text = hadoop.io.Text
    delegation = hadoop.hdfs.security.token.delegation
    issue = int(time.time() * 1000)

    def identifier(owner, renewer, real_user, seq, key_id):
        ident = delegation.DelegationTokenIdentifier(Text(owner), Text(renewer), Text(real_user))
        ident.setIssueDate(issue)
        ident.setMaxDate(issue + WEEK_MS)
        ident.setSequenceNumber(seq)
        ident.setMasterKeyId(key_id)
        return ident

    specs = [  # alias, identifier (JVM object or raw bytes), password, kind, service
        ("ha-hdfs:mycluster", identifier("alice", "yarn", "", 123456, 42), os.urandom(300),
         HDFS_DELEGATION_KIND, "ha-hdfs:mycluster"),
        ("swebhdfs://nn:9871", identifier("bøb-ü", "rm", "hive", 7, -3), os.urandom(20),
         "SWEBHDFS delegation", "10.0.0.1:9871"),
        ("opaque", os.urandom(50), b"", "tfspark-test-kind", "svc:ünïcode"),
    ]
    creds = hadoop.security.Credentials()
    jtokens, expected, idents = {}, {}, {}
    for alias, ident, password, kind, service in specs:
        raw = ident if isinstance(ident, bytes) else bytes(ident.getBytes())
        jtoken = hadoop.security.token.Token(raw, password, Text(kind), Text(service))
        creds.addToken(Text(alias), jtoken)
        jtokens[alias] = jtoken
        expected[alias] = Token(raw, password, kind, service, alias)
        idents[alias] = None if isinstance(ident, bytes) else ident
    secret_key = os.urandom(32)
    creds.addSecretKey(Text("a-secret-key"), secret_key)
    return {"creds": creds, "jtokens": jtokens, "expected": expected, "idents": idents,
            "secret_key": secret_key, "issue": issue}


def write_with_hadoop(jvm, creds, path, format_name=None):
    """``Credentials.writeTokenStorageToStream``, in the named ``SerializedFormat`` (or
    Hadoop's default when None)."""
    out = jvm.java.io.DataOutputStream(jvm.java.io.FileOutputStream(str(path)))
    try:
        if format_name is None:
            creds.writeTokenStorageToStream(out)
        else:
            formats = getattr(jvm.org.apache.hadoop.security, "Credentials$SerializedFormat")
            creds.writeTokenStorageToStream(out, getattr(formats, format_name))
    finally:
        out.close()
    return str(path)


def assert_reads_back(path, hadoop_credentials):
    tokens = read_token_file(path)
    expected = hadoop_credentials["expected"]
    assert sorted(t.alias for t in tokens) == sorted(expected)
    for token in tokens:
        assert token == expected[token.alias]  # identifier, password, kind, service, alias
        assert hadoop_credentials["secret_key"] not in token.identifier + token.password
    return tokens


@pytest.mark.parametrize("format_name, version", [("WRITABLE", 0), ("PROTOBUF", 1)])
def test_a_file_hadoop_wrote_in_either_format_reads_back_token_for_token(
        jvm, hadoop_credentials, tmp_path, format_name, version):
    path = write_with_hadoop(jvm, hadoop_credentials["creds"], tmp_path / format_name,
                             format_name)
    with open(path, "rb") as fh:
        assert fh.read(5) == b"HDTS" + bytes([version])
    assert_reads_back(path, hadoop_credentials)


def test_hadoops_default_token_file_is_the_writable_format_and_reads_back(
        jvm, hadoop_credentials, tmp_path):
    hadoop = jvm.org.apache.hadoop
    by_file = str(tmp_path / "default-file")
    hadoop_credentials["creds"].writeTokenStorageFile(hadoop.fs.Path(f"file://{by_file}"),
                                                      hadoop.conf.Configuration())
    by_stream = write_with_hadoop(jvm, hadoop_credentials["creds"], tmp_path / "default-stream")
    for path in (by_file, by_stream):
        with open(path, "rb") as fh:
            assert fh.read(5) == b"HDTS\x00"
        assert_reads_back(path, hadoop_credentials)


def test_url_string_is_what_hadoop_encodes_and_hadoop_decodes_ours(jvm, hadoop_credentials):
    for alias, jtoken in hadoop_credentials["jtokens"].items():
        token = hadoop_credentials["expected"][alias]
        assert token.url_string() == jtoken.encodeToUrlString()
        assert Token.from_url_string(jtoken.encodeToUrlString()) == Token(
            token.identifier, token.password, token.kind, token.service)
        decoded = jvm.org.apache.hadoop.security.token.Token()
        decoded.decodeFromUrlString(token.url_string())
        assert decoded.equals(jtoken)


def test_decode_identifier_gives_the_owner_renewer_and_dates_hadoop_set(
        jvm, hadoop_credentials, tmp_path):
    path = write_with_hadoop(jvm, hadoop_credentials["creds"], tmp_path / "p", "PROTOBUF")
    issue = hadoop_credentials["issue"]
    for token in read_token_file(path):
        ident = hadoop_credentials["idents"][token.alias]
        info = decode_identifier(token)
        if ident is None:
            assert info is None
            continue
        assert (info.owner, info.renewer, info.real_user) == (
            ident.getOwner().toString(), ident.getRenewer().toString(),
            ident.getRealUser().toString())
        assert (info.issue_date, info.max_date) == (issue, issue + WEEK_MS)
        assert (info.sequence_number, info.master_key_id) == (
            ident.getSequenceNumber(), ident.getMasterKeyId())
        assert info.issue_datetime.timestamp() * 1000 == pytest.approx(issue, abs=1)
        assert info.owner in repr(token) and repr(token).startswith("Token(kind=")
    owners = {decode_identifier(t).owner for t in read_token_file(path)
              if decode_identifier(t)}
    assert owners == {"alice", "bøb-ü"}


def test_hadoop_reads_the_token_file_tfspark_writes_private_to_its_owner(
        jvm, hadoop_credentials, tmp_path):
    tokens = list(hadoop_credentials["expected"].values())
    path = tmp_path / "tfspark-tokens"
    write_token_file(path, tokens)
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["tfspark-tokens"]  # no partial left
    hadoop = jvm.org.apache.hadoop
    read = hadoop.security.Credentials.readTokenStorageFile(
        hadoop.fs.Path(f"file://{path}"), hadoop.conf.Configuration())
    assert read.numberOfTokens() == len(tokens)
    for alias, jtoken in hadoop_credentials["jtokens"].items():
        assert read.getToken(hadoop.io.Text(alias)).equals(jtoken)
    assert read_token_file(path) == tokens
