"""A real Spark standalone cluster (one master, N workers) on 127.0.0.1, from pip's pyspark.

pip's pyspark has no ``sbin`` scripts, so the daemons start through ``bin/spark-class``. Ports are
chosen by the daemons (port 0) and read back from the master's web UI, which is also how
readiness is awaited: the cluster is up when the master's ``/json`` lists every worker ALIVE.

    with StandaloneCluster(base_dir, num_workers=2, cores_per_worker=2) as cluster:
        spark = SparkSession.builder.master(cluster.master_url)...

The daemons die with the Python process that started them, however it dies (SIGTERM, SIGKILL:
Linux's PR_SET_PDEATHSIG, see ``tfspark.testing._process``): each gets SIGTERM, and a worker's
shutdown hook kills its executors.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Callable, Dict, List, Optional

from tfspark.testing._process import spawn


def spark_home() -> str:
    """pip's pyspark package folder, which is a usable SPARK_HOME."""
    import pyspark
    return os.path.dirname(pyspark.__file__)


class StandaloneCluster:
    """Start/stop a Spark standalone master and workers bound to 127.0.0.1.

    ``worker_hosts`` puts worker ``i`` (and its executors) on another loopback address, e.g.
    ``["127.0.0.2", "127.0.0.3"]``: Spark then sees several hosts (it launches a speculative copy
    of a task only on a host where the task is not already running).

    ``executor_start_delays`` (seconds, by worker): worker ``i``'s JVMs start that much later
    (a ``java`` that waits first, as the worker's ``JAVA_HOME``), so its executors register
    that long after the others -- as on a busy cluster, or YARN while containers arrive.
    """

    def __init__(self, base_dir: str, num_workers: int = 2, cores_per_worker: int = 2,
                 memory_per_worker: str = "4g", start_timeout: float = 120.0,
                 worker_hosts: Optional[List[str]] = None,
                 worker_resources: Optional[Dict[str, List[str]]] = None,
                 executor_start_delays: Optional[List[float]] = None):
        self.base_dir = os.path.abspath(base_dir)
        self.executor_start_delays = executor_start_delays or [0.0] * num_workers
        # e.g. {"gpu": ["0", "1"]}: each worker offers these (fake) addresses, found by a
        # discovery script as real GPUs are (Spark's resource scheduling cannot tell)
        self.worker_resources = worker_resources or {}
        self.worker_hosts = worker_hosts or ["127.0.0.1"] * num_workers
        self.num_workers = num_workers
        self.cores_per_worker = cores_per_worker
        self.memory_per_worker = memory_per_worker
        self.start_timeout = start_timeout
        self.master_url: Optional[str] = None
        self.web_url: Optional[str] = None
        self._processes: List[subprocess.Popen] = []

    def env(self, host: str = "127.0.0.1") -> Dict[str, str]:
        env = dict(os.environ)
        env.update(SPARK_HOME=spark_home(), SPARK_LOCAL_IP=host,
                   SPARK_DAEMON_MEMORY="256m", PYSPARK_PYTHON=sys.executable,
                   SPARK_LOG_DIR=self.base_dir, SPARK_NO_DAEMONIZE="1")
        options = []
        for name, addresses in self.worker_resources.items():
            options += [f"-Dspark.worker.resource.{name}.amount={len(addresses)}",
                        f"-Dspark.worker.resource.{name}.discoveryScript="
                        f"{self.discovery_script(name)}"]
        if options:
            env["SPARK_WORKER_OPTS"] = " ".join(options)
        return env

    def _delayed_java_home(self, delay: float) -> str:
        """A JAVA_HOME whose ``bin/java`` waits ``delay`` seconds, then runs the real one."""
        import shutil
        real = os.path.realpath(shutil.which("java") or "java")
        home = os.path.join(self.base_dir, f"java-after-{delay:g}s")
        os.makedirs(os.path.join(home, "bin"), exist_ok=True)
        path = os.path.join(home, "bin", "java")
        with open(path, "w") as f:
            f.write(f'#!/bin/sh\nsleep {delay:g}\nexec "{real}" "$@"\n')
        os.chmod(path, 0o755)
        return home

    def discovery_script(self, name: str) -> str:
        """A resource discovery script reporting ``worker_resources[name]``."""
        path = os.path.join(self.base_dir, f"discover-{name}.sh")
        if not os.path.exists(path):
            info = json.dumps({"name": name, "addresses": self.worker_resources[name]})
            with open(path, "w") as f:
                f.write(f"#!/bin/sh\necho '{info}'\n")
            os.chmod(path, 0o755)
        return path

    def _spawn(self, name: str, args: List[str], host: str = "127.0.0.1",
               java_delay: float = 0.0) -> str:
        log_path = os.path.join(self.base_dir, f"{name}.log")
        env = self.env(host)
        if java_delay:
            env["JAVA_HOME"] = self._delayed_java_home(java_delay)
        with open(log_path, "wb") as log:
            # spark-class execs the JVM, which keeps the die-with-parent setting
            self._processes.append(spawn(
                [os.path.join(spark_home(), "bin", "spark-class"), *args],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                cwd=self.base_dir, start_new_session=True))
        return log_path

    def start(self) -> "StandaloneCluster":
        os.makedirs(self.base_dir, exist_ok=True)
        try:
            master_log = self._spawn("master", [
                "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", "0",
                "--webui-port", "0"])
            self.master_url = self._await_log(master_log, r"Starting Spark master at (spark://\S+)")
            self.web_url = self._await_log(master_log, r"started at (http://\S+)")
            for i in range(self.num_workers):
                self._spawn_worker(i, self.worker_hosts[i], self.executor_start_delays[i])
            self._await(lambda: self.alive_workers() >= self.num_workers,
                        f"{self.num_workers} workers to register with {self.master_url}")
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn_worker(self, index: int, host: str, java_delay: float = 0.0) -> None:
        work_dir = os.path.join(self.base_dir, f"worker-{index}")
        self._spawn(f"worker-{index}", [
            "org.apache.spark.deploy.worker.Worker", "--host", host,
            "--port", "0", "--webui-port", "0", "--cores", str(self.cores_per_worker),
            "--memory", self.memory_per_worker, "--work-dir", work_dir, self.master_url],
            host, java_delay=java_delay)

    def add_worker(self, host: str = "127.0.0.1") -> None:
        """Start one more worker (e.g. a replacement for one that was lost) and wait until it
        has registered with the master (its own log says so: the master's count of live
        workers still includes a killed one until it notices)."""
        index = sum(1 for name in os.listdir(self.base_dir) if name.startswith("worker-")
                    and name.endswith(".log"))
        self._spawn_worker(index, host)
        log = os.path.join(self.base_dir, f"worker-{index}.log")
        deadline = time.monotonic() + self.start_timeout
        while True:
            with open(log, errors="replace") as f:
                if "Successfully registered with master" in f.read():
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker-{index} did not register:\n{self._log_tails()}")
            time.sleep(0.3)

    def alive_workers(self) -> int:
        with urllib.request.urlopen(f"{self.web_url}/json/", timeout=5) as response:
            state = json.load(response)
        return sum(1 for w in state.get("workers", []) if w.get("state") == "ALIVE")

    def _await_log(self, path: str, pattern: str) -> str:
        found: List[str] = []

        def match() -> bool:
            with open(path, errors="replace") as f:
                m = re.search(pattern, f.read())
            if m:
                found.append(m.group(1))
            return bool(m)

        self._await(match, f"'{pattern}' in {path}")
        return found[0]

    def _await(self, condition, what: str) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            dead = [p for p in self._processes if p.poll() is not None]
            if dead:
                raise RuntimeError(f"a Spark daemon exited while waiting for {what}:\n"
                                   + self._log_tails())
            try:
                if condition():
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"timed out after {self.start_timeout}s waiting for {what}:\n"
                           + self._log_tails())

    def _log_tails(self, lines: int = 20) -> str:
        out = []
        for name in sorted(os.listdir(self.base_dir)):
            if name.endswith(".log"):
                with open(os.path.join(self.base_dir, name), errors="replace") as f:
                    out.append(f"--- {name} ---\n" + "".join(f.readlines()[-lines:]))
        return "\n".join(out)

    def stop(self) -> None:
        for process in reversed(self._processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self._processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self._processes = []

    def __enter__(self) -> "StandaloneCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def kill_spark_worker_above(pid: Optional[int] = None) -> bool:
    """SIGKILL the Spark standalone worker daemon that ``pid`` (default: this process) runs
    under, with its executors (its process group): the slot is gone for good, as when a
    machine is lost. False if there is none; for this process, returns only then (it dies with
    its task)."""
    return _kill_group_above(pid, b"org.apache.spark.deploy.worker.Worker")


def kill_executor_above(pid: Optional[int] = None) -> bool:
    """SIGKILL the Spark executor that ``pid`` (default: this process) runs under, with its
    Python workers (its process group: on YARN, the container). False if there is none."""
    return _kill_group_above(pid, b"CoarseGrainedExecutorBackend")


def _kill_group_above(pid: Optional[int], marker: bytes) -> bool:
    own = pid is None
    pid = pid or os.getpid()
    while pid > 1:
        with open(f"/proc/{pid}/stat") as f:
            pid = int(f.read().rsplit(")", 1)[1].split()[1])
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if marker in f.read():
                os.killpg(os.getpgid(pid), signal.SIGKILL)
                if own:
                    time.sleep(60)  # this process dies with its task meanwhile
                return True
    return False


def node_process(job_name: str, task_index: int) -> Optional[int]:
    """The pid of a running TF node's process (``python -m tfspark._node.process <folder>``,
    its folder named ``tfspark-<job_name>-<task_index>-*``)."""
    marker = f"/tfspark-{job_name}-{task_index}-".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if b"tfspark._node.process" in cmdline and marker in cmdline:
            return int(entry)
    return None


def request_kill(folder: str, job_name: str, task_index: int, replace: bool = False) -> None:
    """Ask the :class:`NodeKiller` watching ``folder`` to kill that node's executor (from the
    job: a callback of its chief, say); it answers with ``<folder>/killed``."""
    for name in os.listdir(folder):
        if name.startswith("kill-") or name == "killed":
            os.remove(os.path.join(folder, name))  # an earlier request and its answer
    draft = os.path.join(folder, ".request")
    with open(draft, "w") as f:
        f.write("replace" if replace else "")
    os.replace(draft, os.path.join(folder, f"kill-{job_name}-{task_index}"))


def await_kill(folder: str, timeout: float = 120) -> None:
    """Until the :class:`NodeKiller` has answered :func:`request_kill`."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(os.path.join(folder, "killed")):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no answer to a kill request in {folder} after {timeout:g}s")
        time.sleep(0.2)


class NodeKiller:
    """Kills a TF node's executor for good when the job asks (:func:`request_kill`: a file
    ``<folder>/kill-<job_name>-<task_index>``, saying ``replace`` in it to get a replacement
    afterwards); answers with ``<folder>/killed`` (:func:`await_kill`).
    ``kill(pid)`` kills what runs the node's process (e.g. :func:`kill_spark_worker_above`),
    ``replace()`` brings a slot back. For tests and benchmarks of executors lost for good;
    ``errors`` holds what went wrong."""

    def __init__(self, folder: str, kill: Callable[[int], bool],
                 replace: Optional[Callable[[], None]] = None):
        self.folder = folder
        self.kill = kill
        self.replace = replace
        self.errors: List[str] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="tfspark-node-killer",
                                        daemon=True)

    def __enter__(self) -> "NodeKiller":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join(30)

    def _serve(self) -> None:
        answer = os.path.join(self.folder, "killed")
        while not self._done.wait(0.2):
            for name in os.listdir(self.folder):
                if not name.startswith("kill-") or os.path.exists(answer):
                    continue
                try:
                    self._kill(name, answer)
                except Exception as e:  # noqa: BLE001 - reported through errors
                    self.errors.append(f"{name}: {e!r}")

    def _kill(self, request: str, answer: str) -> None:
        job_name, task_index = request[len("kill-"):].rsplit("-", 1)
        pid = node_process(job_name, int(task_index))
        if not (pid and self.kill(pid)):
            self.errors.append(f"{request}: nothing to kill above its process ({pid})")
        with open(os.path.join(self.folder, request)) as f:
            replace = f.read().strip() == "replace"
        open(answer, "w").close()
        if replace and self.replace is not None:
            self.replace()
