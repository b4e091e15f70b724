"""Which backend a user's Spark handle gets (no JVM: stand-ins with the attributes each reads)."""
from __future__ import annotations

import pytest

from tfspark._driver.spark_backend import (ClassicBackend, ConnectBackend, backend_for,
                                           is_connect_session, task_callback_hosts)
from tfspark.errors import PreflightError


class Context:
    _jsc = object()
    master = "spark://m:7077"


class ClassicSession:
    sparkContext = Context()


class Conf:
    def __init__(self, values):
        self.values = values

    def get(self, key, default=None):
        return self.values.get(key, default)


ConnectSession = type("SparkSession", (), {"__module__": "pyspark.sql.connect.session"})


def connect_session(**conf):
    session = ConnectSession()
    session.conf = Conf(conf)
    return session


def test_a_context_or_a_classic_session_gets_the_classic_backend():
    for handle in (Context(), ClassicSession()):
        backend = backend_for(handle)
        assert isinstance(backend, ClassicBackend) and backend.master == "spark://m:7077"
        assert not backend.connect


def test_a_connect_session_gets_the_connect_backend_with_no_task_callbacks():
    session = connect_session(**{"spark.master": "local[2]",
                                 "spark.hadoop.fs.defaultFS": "hdfs://nn:8020"})
    assert is_connect_session(session)
    backend = backend_for(session)
    assert isinstance(backend, ConnectBackend) and backend.connect
    assert backend.master == "local[2]" and backend.default_fs() == "hdfs://nn:8020"
    assert task_callback_hosts(session) is None


def test_anything_else_is_a_clear_error():
    with pytest.raises(PreflightError, match="expected a SparkSession or a SparkContext"):
        backend_for("local[2]")
