"""Shared fixtures: a real Spark standalone cluster (master + 2 workers on 127.0.0.1) and a real
single-node HDFS + YARN (tfspark.testing.hadoop), each started once per session on first use
and stopped at the end, also when tests fail.

Set TFSPARK_TEST_HADOOP_DIR to the --dir of a cluster started with
`python -m tfspark.testing.hadoop start --dir DIR` to reuse it instead (it is left running).
"""
from __future__ import annotations

import os
import shutil
import sys

import pytest

# Executors must run this interpreter (it has TensorFlow); set before any SparkContext starts.
os.environ["PYSPARK_PYTHON"] = sys.executable
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def standalone_cluster(tmp_path_factory):
    from tfspark.testing.spark import StandaloneCluster
    with StandaloneCluster(str(tmp_path_factory.mktemp("spark-standalone")), num_workers=2,
                           cores_per_worker=2) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def single_core_cluster(tmp_path_factory):
    """TensorFlowOnSpark's standard set-up: a standalone cluster of 2 workers x 1 core, for
    drivers run as subprocesses (this process's SparkContext holds the other cluster)."""
    from tfspark.testing.spark import StandaloneCluster
    with StandaloneCluster(str(tmp_path_factory.mktemp("spark-single-core")), num_workers=2,
                           cores_per_worker=1, memory_per_worker="2g") as cluster:
        yield cluster


@pytest.fixture(scope="session")
def connect_server(tmp_path_factory):
    """One local Spark Connect server (``local[3]``) for every Connect test: their clients are
    subprocesses started with ``connect_server["env"]`` (``SPARK_REMOTE`` and the server's
    token), so each pays a client's start (about 1 s), not a server's (about 10 s)."""
    import secrets
    import subprocess
    import threading
    import time

    from tfspark.testing._process import spawn
    token = secrets.token_hex(16)
    url = "sc://localhost:15002"  # localhost: gRPC local credentials carry the token
    work = tmp_path_factory.mktemp("connect-server")
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, SPARK_LOCAL_IP="127.0.0.1",
               SPARK_CONNECT_AUTHENTICATE_TOKEN=token,
               PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    env.pop("SPARK_REMOTE", None)
    log = open(work / "server.log", "w")
    server = spawn([sys.executable, os.path.join(os.path.dirname(__file__), "connect_server.py")],
                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env,
                   cwd=str(work), text=True)
    try:
        ready = threading.Event()

        def await_ready():
            for line in server.stdout:
                if "READY" in line:
                    ready.set()
                    return

        threading.Thread(target=await_ready, daemon=True).start()
        deadline = time.monotonic() + 180
        while not ready.wait(1) and time.monotonic() < deadline and server.poll() is None:
            pass
        if not ready.is_set():
            pytest.fail(f"the Spark Connect server did not start: see {work}/server.log")
        yield {"url": url, "env": {"SPARK_REMOTE": url, "SPARK_CONNECT_AUTHENTICATE_TOKEN": token}}
    finally:
        server.stdin.close()
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def run_driver(script, *args, cwd, timeout=600):
    """Run a test driver script in its own process (its own SparkContext); return its
    ``RESULT {...}`` line as a dict, or fail with its output."""
    import json
    import subprocess
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, SPARK_LOCAL_IP="127.0.0.1",
               PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    env.pop("SPARK_REMOTE", None)
    done = subprocess.run([sys.executable, script, *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout, cwd=cwd)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stdout[-4000:] + done.stderr[-8000:]
    return json.loads(lines[0][len("RESULT "):]), done


@pytest.fixture(scope="session")
def spark(standalone_cluster):
    """A SparkSession on the standalone cluster: 2 executors x 2 cores = 4 task slots."""
    from pyspark.sql import SparkSession
    session = (SparkSession.builder.master(standalone_cluster.master_url)
               .appName("tfspark-tests")
               .config("spark.driver.host", "127.0.0.1")
               .config("spark.driver.bindAddress", "127.0.0.1")
               .config("spark.executor.cores", "2")
               .config("spark.cores.max", "4")  # the settings tell tfspark the slots
               .config("spark.executor.memory", "1g")
               .config("spark.ui.enabled", "false")
               .config("spark.executorEnv.TF_CPP_MIN_LOG_LEVEL", "2")
               .getOrCreate())
    yield session
    session.stop()


@pytest.fixture(scope="session")
def sc(spark):
    return spark.sparkContext


@pytest.fixture(scope="session")
def hadoop_cluster(tmp_path_factory):
    reuse = os.environ.get("TFSPARK_TEST_HADOOP_DIR")
    from tfspark.testing.hadoop import HadoopCluster
    if reuse:
        yield HadoopCluster.from_state(reuse)
        return
    if not shutil.which("java"):  # never skip: a missing JDK is a broken set-up, not a pass
        pytest.fail("the Hadoop fixtures need `java` (Java 17) on PATH")
    cluster = HadoopCluster(tmp_path_factory.mktemp("hadoop"), yarn=True)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def hdfs_cluster(hadoop_cluster):
    """The shared cluster, for tests that use only HDFS."""
    return hadoop_cluster


@pytest.fixture(scope="session")
def yarn_cluster(hadoop_cluster):
    """The shared cluster, for tests that submit to YARN."""
    return hadoop_cluster


@pytest.fixture(scope="session")
def secure_hadoop(tmp_path_factory):
    """A Kerberized HDFS + YARN against a real MIT KDC, shared by the session's Kerberos tests.
    HDFS delegation tokens live 20 s between renewals and 60 s at most, so that renewal and
    re-issue happen within a test."""
    if not shutil.which("java"):
        pytest.fail("the Hadoop fixtures need `java` (Java 17) on PATH")
    from tfspark.testing.hadoop import HadoopCluster
    from tfspark.testing.kdc import KDC
    base = tmp_path_factory.mktemp("secure-hadoop")
    with KDC(base / "kdc") as kdc:
        cluster = HadoopCluster(base / "hadoop", yarn=True, kdc=kdc, token_renew_interval_s=20,
                                token_max_lifetime_s=60)
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.stop()


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory):
    """A real single-node Kafka broker (KRaft) on 127.0.0.1, from Kafka's Maven Central jars."""
    from tfspark.testing.kafka import KafkaBroker
    with KafkaBroker(str(tmp_path_factory.mktemp("kafka"))) as broker:
        yield broker


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real ``mlflow server`` (sqlite backend, local artifact store) on 127.0.0.1; its URL."""
    import socket
    import subprocess
    import time
    import urllib.request

    from tfspark.testing._process import spawn
    work = tmp_path_factory.mktemp("mlflow")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(work / "server.log", "w")
    server = spawn([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1",
                    "--port", str(port), "--workers", "1",
                    "--backend-store-uri", f"sqlite:///{work}/mlflow.db",
                    "--artifacts-destination", str(work / "artifacts")],
                   stdout=log, stderr=subprocess.STDOUT, cwd=str(work))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start: see {work}/server.log")
            time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture
def hadoop_env(hadoop_cluster, monkeypatch):
    """HADOOP_CONF_DIR & co. of the shared cluster set for one test."""
    for key, value in hadoop_cluster.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("HADOOP_USER_NAME", raising=False)
    return hadoop_cluster.env()


def read_tree(root):
    """{relative path: bytes, or None for a directory} of everything under ``root``."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for d in dirnames:
            found[os.path.normpath(os.path.join(rel, d))] = None
        for f in filenames:
            with open(os.path.join(dirpath, f), "rb") as fh:
                found[os.path.normpath(os.path.join(rel, f))] = fh.read()
    return found


def orphaned_task_dirs(timeout: float = 15.0) -> list:
    """Node-task directories (tfspark._node.task.PrivateDir) under the executors' local dirs (/tmp
    here) whose process is gone, once their janitors have had ``timeout`` to remove them."""
    import glob
    import time

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def orphans() -> list:
        found = glob.glob("/tmp/tfspark-task-*") + glob.glob("/tmp/blockmgr-*/tfspark-task-*")
        for depth in range(4):  # standalone: spark-<id>/executor-<id>/blockmgr-<id>/
            found += glob.glob("/tmp/spark-*/" + "*/" * depth + "tfspark-task-*")
        return [p for p in found if not alive(int(os.path.basename(p).split("-")[2]))]

    deadline = time.monotonic() + timeout
    while orphans() and time.monotonic() < deadline:
        time.sleep(0.5)
    return orphans()
