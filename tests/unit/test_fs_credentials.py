"""tfspark.fs.credentials without a cluster: which token a process uses, from which source, and
what errors and logs may say of it (the Kerberized cluster's own tests are in
tests/integration/test_kerberos.py)."""
from __future__ import annotations

import logging
import os
import time

import pytest

import tfspark.fs as fs
from tfspark.fs import credentials
from tfspark.fs.tokens import HDFS_DELEGATION_KIND, Token, write_token_file


def token(service: str, password: bytes = b"pw", kind: str = HDFS_DELEGATION_KIND) -> Token:
    return Token(b"\0" + os.urandom(8), password, kind, service)


def test_the_token_for_a_namenode_is_picked_by_its_service():
    a, b = token("10.0.0.1:8020"), token("ha-hdfs:prod")
    other = token("rm:8032", kind="RM_DELEGATION_TOKEN")
    assert credentials.pick([other, a, b], "prod") is b
    assert credentials.pick([other, a, b], "10.0.0.1:8020") is a
    assert credentials.pick([other, a, b], "elsewhere:8020", only_one=True) is None
    assert credentials.pick([other, a], "elsewhere:8020") is None  # never another NN's
    assert credentials.pick([other, a], "elsewhere:8020", only_one=True) is a  # YARN's file
    assert credentials.pick([other], "prod", only_one=True) is None


def test_a_nodes_token_file_wins_and_is_read_again_when_it_changes(tmp_path, monkeypatch):
    path = tmp_path / "node.tokens"
    monkeypatch.setenv(credentials.NODE_TOKEN_FILE_ENV, str(path))
    monkeypatch.setenv("HADOOP_TOKEN_FILE_LOCATION", str(tmp_path / "container.tokens"))
    container = token("nn:8020")
    write_token_file(tmp_path / "container.tokens", [container])
    monkeypatch.setattr(credentials, "_provider", None)
    used = lambda: credentials.hdfs_token("nn:8020").url_string()  # noqa: E731
    assert used() == container.url_string()  # no node file yet
    first, second = token("nn:8020"), token("nn:8020")
    write_token_file(path, [first])
    assert used() == first.url_string()
    write_token_file(path, [second])  # same size: a new inode (written beside, renamed)
    assert used() == second.url_string()


def test_tokens_handed_to_a_task_apply_inside_only(monkeypatch):
    monkeypatch.setattr(credentials, "_provider", None)
    monkeypatch.delenv(credentials.NODE_TOKEN_FILE_ENV, raising=False)
    monkeypatch.delenv("HADOOP_TOKEN_FILE_LOCATION", raising=False)
    handed = credentials.HandedTokens([token("nn:8020").url_string()])
    assert "HandedTokens(1)" == repr(handed)
    assert credentials.hdfs_token("nn:8020") is None
    with handed.used():
        assert credentials.hdfs_token("nn:8020") is not None
    assert credentials.hdfs_token("nn:8020") is None


def test_a_yarn_containers_own_token_wins_over_a_handed_snapshot(tmp_path, monkeypatch):
    """The container's token is the application's, renewed by YARN; a handed one is not."""
    monkeypatch.setattr(credentials, "_provider", None)
    monkeypatch.delenv(credentials.NODE_TOKEN_FILE_ENV, raising=False)
    mine, other_nn = token("nn:8020"), token("other:8020")
    write_token_file(tmp_path / "container", [mine])
    monkeypatch.setenv("HADOOP_TOKEN_FILE_LOCATION", str(tmp_path / "container"))
    handed = credentials.HandedTokens([token("nn:8020").url_string(), other_nn.url_string()])
    with handed.used():
        assert credentials.hdfs_token("nn:8020").url_string() == mine.url_string()
        assert credentials.hdfs_token("other:8020").url_string() == other_nn.url_string()


def test_the_auth_adds_the_token_to_namenode_requests_only_and_logs_never_show_it(
        monkeypatch, caplog):
    import requests
    secret = token("nn:8020", password=b"s3cr3t-password")
    handed = credentials.HandedTokens([secret.url_string()])
    auth = credentials.DelegationAuth("nn:8020", ["http://nn:9870"])
    with handed.used():
        sent = auth(requests.Request("GET", "http://nn:9870/webhdfs/v1/x?op=GETFILESTATUS")
                    .prepare())
        redirected = auth(requests.Request(
            "GET", "http://dn:9864/webhdfs/v1/x?op=OPEN&delegation=NN-GIVEN").prepare())
    assert f"delegation={secret.url_string()}" in sent.url
    assert redirected.url.endswith("delegation=NN-GIVEN")  # the NameNode's own, untouched
    with caplog.at_level(logging.DEBUG, logger="urllib3.connectionpool"):
        logging.getLogger("urllib3.connectionpool").debug('"GET %s HTTP/1.1" 200', sent.url)
    assert secret.url_string() not in caplog.text and "delegation=***" in caplog.text


def test_without_any_token_the_error_says_what_to_run(monkeypatch):
    monkeypatch.delenv(credentials.NODE_TOKEN_FILE_ENV, raising=False)
    monkeypatch.delenv("HADOOP_TOKEN_FILE_LOCATION", raising=False)
    monkeypatch.setattr(credentials, "_provider", None)
    auth = credentials.DelegationAuth("nn:8020", ["http://nn:9870"])
    import requests
    monkeypatch.setitem(__import__("sys").modules, "requests_kerberos", None)
    with pytest.raises(fs.FileSystemError) as caught:
        auth(requests.Request("GET", "http://nn:9870/webhdfs/v1/x").prepare())
    for part in ("nn:8020", "kinit", "--keytab", "Kerberos"):
        assert part in str(caught.value)


def test_only_kerberized_hdfs_paths_need_tokens(tmp_path, monkeypatch):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "core-site.xml").write_text(
        "<configuration><property><name>fs.defaultFS</name><value>hdfs://nn:8020</value>"
        "</property></configuration>")
    monkeypatch.setenv("HADOOP_CONF_DIR", str(conf))
    assert fs.delegation_tokens(["hdfs:///x", "s3a://bucket/x", "file:///tmp", "rel"]) == []


def test_errors_and_tracebacks_never_carry_a_request_url_with_a_token():
    from tfspark.fs.errors import redact, translated
    url = "http://nn:9870/webhdfs/v1/x?op=OPEN&delegation=AbC-_123&offset=0"
    assert redact(url) == "http://nn:9870/webhdfs/v1/x?op=OPEN&delegation=***&offset=0"
    with pytest.raises(fs.FileSystemError) as caught:
        with translated("read", "hdfs://nn/x"):
            raise OSError(f"Max retries exceeded with url: {url}")
    assert "AbC-_123" not in str(caught.value) and caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_a_task_takes_the_drivers_renewed_tokens_from_its_desk(monkeypatch):
    """A long task's handed snapshot is replaced by what the driver holds now."""
    monkeypatch.setattr(credentials, "_provider", None)
    monkeypatch.delenv(credentials.NODE_TOKEN_FILE_ENV, raising=False)
    monkeypatch.delenv("HADOOP_TOKEN_FILE_LOCATION", raising=False)
    monkeypatch.setattr(credentials, "REFRESH_SECS", 0.05)
    old, renewed = token("nn:8020"), token("nn:8020")
    monkeypatch.setattr(credentials, "_provider", lambda authority: renewed)
    desk = credentials.TokenDesk("127.0.0.1", "127.0.0.1")
    try:
        handed = credentials.HandedTokens([old.url_string()], ["nn:8020"],
                                          (desk.address, desk.secret))
        assert "secret" not in repr(handed) and old.url_string() not in repr(handed)
        with handed.used():
            deadline = time.monotonic() + 10
            while [t.url_string() for t in credentials._handed] != [renewed.url_string()]:
                assert time.monotonic() < deadline, "the task never got the renewed token"
                time.sleep(0.02)
        assert credentials._handed == []
    finally:
        desk.server.stop()
