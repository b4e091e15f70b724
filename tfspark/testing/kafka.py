"""A real single-node Kafka broker (KRaft mode: broker and controller in one JVM) for tests and
examples, run from Kafka's jars on Maven Central, and Spark's Kafka connector jars.

Only Java 17 and Maven are needed; the jars are fetched once (``conf/kafka/pom.xml``) into
``$TFSPARK_KAFKA_HOME`` (default ``~/.cache/tfspark/kafka-<version>``)::

    with KafkaBroker("/tmp/kafka") as kafka:
        spark = SparkSession.builder.config("spark.jars", ",".join(connector_jars())) ...
        spark.readStream.format("kafka").option("kafka.bootstrap.servers", kafka.bootstrap)...

The broker listens on 127.0.0.1 only, creates topics on first use (2 partitions by default)
and is stopped, with its data, when the block ends.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import List, Optional

from tfspark.testing._process import spawn
from tfspark.testing.hadoop import _build_once, _file_tail, _free_port, java_home, kill_tree

KAFKA_VERSION = "4.1.1"
POM = Path(__file__).resolve().parents[2] / "conf" / "kafka" / "pom.xml"
#: Spark's Kafka connector and what it needs beyond pyspark's own jars
CONNECTOR_JARS = ("spark-sql-kafka-0-10", "spark-token-provider-kafka-0-10", "kafka-clients",
                  "commons-pool2")

_LOG4J2 = """status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = %d %p %c{{1}} - %m%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
"""


class KafkaError(RuntimeError):
    """The broker could not be fetched or started (the message says why, with its log)."""


def kafka_home() -> Path:
    return Path(os.environ.get("TFSPARK_KAFKA_HOME")
                or Path.home() / ".cache" / "tfspark" / f"kafka-{KAFKA_VERSION}")


def _fetch(profile: str, folder: Path) -> Path:
    """The jars of ``conf/kafka/pom.xml``'s ``profile`` (``broker`` or ``spark``), fetched with
    Maven into ``folder`` on first use."""
    stamp = folder / ".complete"

    def fetch() -> None:
        mvn = shutil.which("mvn")
        if not mvn:
            raise KafkaError(f"Kafka jars are not in {folder} and `mvn` is not on PATH")
        staging = folder.with_name(folder.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        cmd = [mvn, "-q", "-B", "-f", str(POM), f"-P{profile},-broker" if profile != "broker"
               else "-Pbroker", f"-Dmaven.repo.local={folder.parent / 'm2'}",
               "dependency:copy-dependencies", f"-DoutputDirectory={staging}"]
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if done.returncode != 0:
            raise KafkaError(f"fetching Kafka jars failed: {' '.join(cmd)}\n{done.stdout[-4000:]}")
        (staging / ".complete").write_text(POM.read_text())
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)

    _build_once(folder.parent,
                lambda: stamp.exists() and stamp.read_text() == POM.read_text(), fetch)
    return folder


def connector_jars(home: Optional[Path] = None) -> List[str]:
    """Spark's Kafka connector jars, for ``spark.jars`` (fetched on first use)."""
    folder = _fetch("spark", Path(home or kafka_home()) / "spark")
    return sorted(str(p) for p in folder.glob("*.jar") if p.name.startswith(CONNECTOR_JARS))


class KafkaBroker:
    """A Kafka broker + KRaft controller in one JVM on 127.0.0.1 (see the module docstring)."""

    def __init__(self, workdir: str, partitions: int = 2, start_timeout: float = 120.0):
        self.workdir = Path(workdir)
        self.partitions, self.start_timeout = partitions, start_timeout
        self.port = _free_port()
        self.controller_port = _free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._process: Optional[subprocess.Popen] = None

    def __enter__(self) -> "KafkaBroker":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        jars = _fetch("broker", kafka_home() / "broker")
        self.workdir.mkdir(parents=True, exist_ok=True)
        config, log = self.workdir / "server.properties", self.workdir / "kafka.log"
        config.write_text("\n".join([
            "process.roles=broker,controller", "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},"
            f"CONTROLLER://127.0.0.1:{self.controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={self.workdir / 'data'}", f"num.partitions={self.partitions}",
            "offsets.topic.replication.factor=1", "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1", "share.coordinator.state.topic.replication.factor=1",
            "group.initial.rebalance.delay.ms=0", "auto.create.topics.enable=true", ""]))
        (self.workdir / "log4j2.properties").write_text(_LOG4J2.format(log=log))
        java = [str(Path(java_home()) / "bin" / "java"), "-Xmx512m", "-cp", f"{jars}/*",
                f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}"]
        formatted = subprocess.run(
            java + ["kafka.tools.StorageTool", "format", "-t", uuid.uuid4().hex[:22],
                    "-c", str(config)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
        if formatted.returncode != 0:
            raise KafkaError(f"formatting Kafka's storage failed:\n{formatted.stdout[-4000:]}")
        self._process = spawn(java + ["kafka.Kafka", str(config)], stdout=subprocess.DEVNULL,
                              stderr=open(self.workdir / "kafka.err", "w"))
        deadline = time.monotonic() + self.start_timeout
        while not self._serving():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise KafkaError(f"the Kafka broker did not start within {self.start_timeout}s:"
                                 f"\n{_file_tail(log)}\n{_file_tail(self.workdir / 'kafka.err')}")
            time.sleep(0.2)

    def _serving(self) -> bool:
        """The broker has said it started (its port alone opens before it takes requests)."""
        log = self.workdir / "kafka.log"
        try:
            started = "Kafka Server started" in log.read_text(errors="replace")
        except OSError:
            return False
        if not started:
            return False
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            kill_tree(self._process.pid)
        self._process = None
