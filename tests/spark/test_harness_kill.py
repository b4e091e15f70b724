"""The shipped harnesses leave no daemon behind when their Python process is killed.

Each test runs a harness the way the README does, in a Python process of its own whose working
folder is the test's tmp_path, so every process it starts (daemons, executors and their Python
workers, the driver JVM) is found by its working folder. That Python is then SIGTERMed or
SIGKILLed -- neither runs ``__exit__`` -- and every one of those processes must go.
The mechanism itself: tests/unit/test_harness_cleanup.py.
"""
from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import textwrap
import time
from typing import Callable, Dict, Tuple

import pytest

START_TIMEOUT = 240
GONE_TIMEOUT = 60

# The README's "Spark standalone" snippet (1 worker x 1 core here); with "app", a SparkSession on
# it runs one Python task first, so that an executor and its Python workers exist too.
SPARK_SNIPPET = textwrap.dedent("""\
    import sys, time
    from tfspark.testing.spark import StandaloneCluster as C
    with C(sys.argv[1], num_workers=1, cores_per_worker=1, memory_per_worker="1g") as c:
        print(c.master_url, flush=True)
        if sys.argv[2] == "app":
            from pyspark.sql import SparkSession
            spark = (SparkSession.builder.master(c.master_url).appName("harness-cleanup")
                     .config("spark.driver.host", "127.0.0.1")
                     .config("spark.driver.bindAddress", "127.0.0.1")
                     .config("spark.executor.memory", "512m")
                     .config("spark.ui.enabled", "false").getOrCreate())
            print("APP", spark.sparkContext.parallelize(range(4), 1).map(lambda x: x * x).sum(),
                  flush=True)
        time.sleep(1e9)
""")

HADOOP_SNIPPET = textwrap.dedent("""\
    import sys, time
    from tfspark.testing.hadoop import HadoopCluster
    with HadoopCluster(sys.argv[1], yarn=True, nm_memory_mb=2048, nm_vcores=1) as c:
        print(c.default_fs, c.rm_address, flush=True)
        time.sleep(1e9)
""")


def _stat(pid: int) -> Tuple[str, str]:
    """(state, start time) of ``pid``; raises OSError once it is gone."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return fields[0], fields[19]


def _processes_under(folder: str) -> Dict[Tuple[int, str], str]:
    """{(pid, start time): command line} of live processes whose working folder is in
    ``folder``."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            state, started = _stat(pid)
        except OSError:
            continue
        if state not in "ZX" and (cwd == folder or cwd.startswith(folder + os.sep)):
            found[(pid, started)] = cmdline
    return found


def _alive(key: Tuple[int, str]) -> bool:
    """Not exited: the same process (pid and start time), and not a zombie."""
    try:
        state, started = _stat(key[0])
    except OSError:
        return False
    return started == key[1] and state not in "ZX"


def _read_line_until(stream, done: Callable[[str], bool], timeout: float, what: str,
                     diagnose: Callable[[], str]) -> str:
    """Lines of ``stream`` until one satisfies ``done``; fails at EOF or after ``timeout``."""
    deadline, buffer = time.monotonic() + timeout, b""
    fd = stream.fileno()
    while True:
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if done(line.decode(errors="replace")):
                return line.decode()
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            pytest.fail(f"no {what} after {timeout}s\n{diagnose()}")
        chunk = os.read(fd, 4096)
        if not chunk:
            pytest.fail(f"the harness exited before printing {what}\n{diagnose()}")
        buffer += chunk


def _tails(folder: str, lines: int = 15) -> str:
    out = []
    for dirpath, _, filenames in os.walk(folder):
        for name in sorted(filenames):
            if name.endswith((".log", "stderr", ".err")):
                with open(os.path.join(dirpath, name), errors="replace") as f:
                    out.append(f"--- {os.path.join(dirpath, name)} ---\n"
                               + "".join(f.readlines()[-lines:]))
    return "\n".join(out)


def _kill_harness_and_check(tmp_path, snippet: str, args, ready: Callable[[str], bool],
                            sig: int, expect: Dict[str, str]) -> Dict[str, int]:
    """Run ``snippet`` in its own Python (cwd ``tmp_path``), wait for a line it prints that
    satisfies ``ready``, check that a process matching each of ``expect``'s patterns runs, send
    ``sig`` to that Python and wait for every process under ``tmp_path`` to exit.
    Returns {name: count of processes that matched} for the caller's own checks."""
    folder = os.path.realpath(str(tmp_path))
    stderr_path = os.path.join(folder, "harness.err")
    with open(stderr_path, "wb") as stderr:
        harness = subprocess.Popen([sys.executable, "-c", snippet, *args], cwd=folder,
                                   stdout=subprocess.PIPE, stderr=stderr,
                                   stdin=subprocess.DEVNULL)
    started = {}
    try:
        _read_line_until(harness.stdout, ready, START_TIMEOUT, "ready line",
                         lambda: _tails(folder))
        started = _processes_under(folder)
        started.pop((harness.pid, _stat(harness.pid)[1]), None)
        found = {name: sum(1 for cmd in started.values() if re.search(pattern, cmd))
                 for name, pattern in expect.items()}
        assert all(found.values()), f"expected processes missing: {found}\n{started}"

        harness.send_signal(sig)
        assert harness.wait(GONE_TIMEOUT) == -sig  # killed: no __exit__ ran

        deadline = time.monotonic() + GONE_TIMEOUT
        while True:
            # also anything started meanwhile (an executor relaunched while its worker stops)
            left = {key: cmd for key, cmd in {**started, **_processes_under(folder)}.items()
                    if _alive(key)}
            if not left:
                return found
            if time.monotonic() > deadline:
                pytest.fail(f"{len(left)} processes outlived the harness's Python after "
                            f"{GONE_TIMEOUT}s:\n" + "\n".join(
                                f"{pid}: {cmd[:300]}" for (pid, _), cmd in left.items()))
            time.sleep(0.2)
    finally:  # never leave anything running, whatever failed above
        if harness.poll() is None:
            harness.kill()
        harness.wait()
        harness.stdout.close()
        for pid, _ in set(started) | set(_processes_under(folder)):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


SPARK_DAEMONS = {"master": r"deploy\.master\.Master ", "worker": r"deploy\.worker\.Worker "}


def test_standalone_cluster_goes_with_its_sigtermed_python(tmp_path):
    """SIGTERM, with an application running: the driver JVM, the executor and its Python
    workers go too (the worker's shutdown hook kills the executor)."""
    _kill_harness_and_check(
        tmp_path, SPARK_SNIPPET, [str(tmp_path / "spark-sa"), "app"],
        lambda line: line.startswith("APP "), signal.SIGTERM,
        dict(SPARK_DAEMONS, executor=r"CoarseGrainedExecutorBackend ",
             python_worker=r"-m pyspark\.daemon", driver=r"deploy\.SparkSubmit "))


def test_standalone_cluster_goes_with_its_sigkilled_python(tmp_path):
    """SIGKILL, the README's snippet as it is: the master and the worker go."""
    _kill_harness_and_check(
        tmp_path, SPARK_SNIPPET, [str(tmp_path / "spark-sa"), "no-app"],
        lambda line: line.startswith("spark://"), signal.SIGKILL, SPARK_DAEMONS)


def test_hadoop_cluster_goes_with_its_sigkilled_python(tmp_path):
    """SIGKILL: the NameNode, DataNode, ResourceManager and NodeManager go."""
    from tfspark.testing.hadoop import ensure_jars
    ensure_jars()  # a first run fetches the jars here, not within the harness's start timeout
    _kill_harness_and_check(
        tmp_path, HADOOP_SNIPPET, [str(tmp_path / "hc")],
        lambda line: line.startswith("hdfs://"), signal.SIGKILL,
        {name: rf"-Dproc_{name} " for name in
         ("namenode", "datanode", "resourcemanager", "nodemanager")})
