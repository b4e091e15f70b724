"""tfspark's one way to reach Spark: a classic ``SparkContext`` or a Spark Connect session.

Everything the driver side asks of Spark goes through a :class:`SparkBackend`: settings, the
default filesystem, task slots, and running the TF cluster's barrier stage and its feeding jobs
(what :class:`tfspark._driver.attempt.Attempt` uses), with a way to cancel them.

* :class:`ClassicBackend` -- a ``SparkContext`` in this process (also what a classic
  ``SparkSession`` has): an RDD barrier stage in a job group.
* :class:`ConnectBackend` -- a Spark Connect session, which has no ``SparkContext``: the stage is
  ``spark.range(n, numPartitions=n).mapInArrow(task, schema, barrier=True)`` under a job tag, as
  PySpark's TorchDistributor runs its own; RDDs and the JVM are out of reach.
"""
from __future__ import annotations

import functools
import getpass
import os
import socket
import sys
import threading
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

from tfspark import constants
from tfspark.errors import PreflightError


def is_connect_session(spark: Any) -> bool:
    """True for a Spark Connect ``SparkSession`` (told apart without importing Connect)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def backend_for(spark: Any) -> "SparkBackend":
    """The backend for what a user passes: a SparkContext, or a SparkSession (classic/Connect)."""
    if is_connect_session(spark):
        return ConnectBackend(spark)
    sc = getattr(spark, "sparkContext", spark)  # a classic SparkSession, or the context itself
    if not hasattr(sc, "_jsc"):
        raise PreflightError(f"expected a SparkSession or a SparkContext, got {type(spark)}")
    return ClassicBackend(sc)


def active_default_fs() -> Optional[str]:
    """``fs.defaultFS`` of the Spark application this process drives (a classic SparkContext, or
    a Spark Connect session), None when it drives none: the first source of
    :func:`tfspark.fs.default_fs`, so that a path resolves the same in ``tfspark.fs`` and in
    ``TFCluster`` (both ask the backend, :meth:`SparkBackend.default_fs`)."""
    pyspark = sys.modules.get("pyspark")  # never imported from here: only if the app did
    sc = getattr(getattr(pyspark, "SparkContext", None), "_active_spark_context", None)
    if sc is not None and getattr(sc, "_jsc", None) is not None:
        try:
            return ClassicBackend(sc).default_fs()
        except Exception:  # noqa: BLE001 - a stopping context: the configuration files tell
            return None
    connect = sys.modules.get("pyspark.sql.connect.session")
    session = connect.SparkSession.getActiveSession() if connect is not None else None
    return ConnectBackend(session).default_fs() if session is not None else None


def task_callback_hosts(spark: Any) -> Optional[Tuple[str, str]]:
    """:meth:`SparkBackend.task_callback_hosts` of what a user passes."""
    return backend_for(spark).task_callback_hosts()


def session_of(spark: Any) -> Any:
    """A SparkSession (classic or Connect) for what a user passes: a session, or a
    SparkContext (as TensorFlowOnSpark's API took)."""
    if is_connect_session(spark) or hasattr(spark, "sparkContext"):
        return spark
    if hasattr(spark, "_jsc"):
        from pyspark.sql import SparkSession
        active = SparkSession.getActiveSession()
        return active if active is not None and active.sparkContext is spark else SparkSession(
            spark)
    raise PreflightError(f"expected a SparkSession or a SparkContext, got {type(spark)}")


class SparkBackend:
    """What the driver asks of Spark (see the module docstring)."""

    connect = False
    master: str

    def conf(self) -> Dict[str, str]:
        raise NotImplementedError

    def default_fs(self) -> str:
        """The application's ``fs.defaultFS``: its Hadoop configuration's (Spark's
        ``spark.hadoop.fs.defaultFS``, else the configuration files, $HADOOP_CONF_DIR), else
        ``file:///``; classic and Connect answer by the same rule."""
        raise NotImplementedError

    def default_parallelism(self) -> int:
        """``spark.default.parallelism``, else the application's cores (8 where Spark cannot
        say: Spark Connect)."""
        configured = self.conf().get("spark.default.parallelism")
        return int(configured) if configured else 8

    def user(self) -> str:
        raise NotImplementedError

    def slots(self, profile: Any = None) -> Optional[int]:
        """Task slots the application has right now (for tasks of ``profile``, a
        ``ResourceProfile``, if given); None when this backend cannot tell."""
        raise NotImplementedError

    def resource_profile(self, requests: Dict[str, float]) -> Any:
        """A ``ResourceProfile`` whose tasks ask for ``requests`` (``cpus`` and resources such
        as ``gpu``) on the executors the application has: stage-level scheduling."""
        from pyspark.resource import ResourceProfileBuilder, TaskResourceRequests
        tasks = TaskResourceRequests()
        for name, amount in requests.items():
            if name == "cpus":
                tasks.cpus(int(amount))
            else:
                tasks.resource(name, float(amount))
        try:
            return ResourceProfileBuilder().require(tasks).build
        except Exception as e:  # noqa: BLE001 - Spark says why in its own words
            raise PreflightError(f"Spark cannot build a resource profile for {requests}: "
                                 f"{str(e).splitlines()[0]}") from e

    def executors(self) -> Optional[int]:
        raise NotImplementedError

    def run_barrier_stage(self, num_tasks: int, task: Callable, group: str,
                          description: str, data: Any = None, profile: Any = None) -> list:
        """Run ``task`` (a barrier ``mapPartitions`` function yielding ``(worker_num, status,
        value, report)``) as one barrier stage of ``num_tasks`` tasks in job group/tag ``group``;
        return the collected tuples. ``data`` (an RDD, or a DataFrame whose partitions reach
        ``task`` as Arrow batches), with ``num_tasks`` partitions, is the stage's input;
        ``profile`` (a ``ResourceProfile``) the task resources of the stage."""
        raise NotImplementedError

    def run_barrier_stage_with_outputs(self, num_tasks: int, task: Callable, group: str,
                                       description: str, data: Any, profile: Any = None
                                       ) -> Tuple[list, Any]:
        """Like :meth:`run_barrier_stage` over an RDD ``data``, for a ``task`` that yields
        output pairs ``(key, value)`` before its node's tuple: returns the nodes' tuples and an
        RDD of the pairs, kept (memory and disk) so that reading it runs the stage no more. An
        RDD read from it (a barrier stage's output) must begin with a shuffle."""
        raise PreflightError("this Spark session cannot keep a stage's output as an RDD "
                             "(Spark Connect has no RDDs)")

    #: whether the TF cluster can run as one Spark job per node (see
    #: :mod:`tfspark._driver.node_jobs`)
    runs_node_jobs = False

    def run_node_job(self, worker_num: int, task: Callable, group: str, description: str,
                     profile: Any = None) -> list:
        """Run ``task`` (a ``mapPartitions`` function) as a one-task job in job group ``group``
        over one partition holding ``worker_num``; its rows."""
        raise PreflightError("this Spark session cannot run a TF node as a job of its own")

    def preparing(self, group: str) -> bool:
        """True while stages that compute the barrier stage's input (a shuffle) still run in
        ``group``, so the TF nodes' tasks cannot have started yet."""
        return False

    def run_job(self, action: Callable[[], list], group: str, description: str) -> list:
        """Run ``action`` (which runs Spark jobs) with its jobs in job group/tag ``group``."""
        raise NotImplementedError

    def cancel(self, group: str) -> None:
        """Cancel every job of ``group``."""
        raise NotImplementedError

    def cancel_stage(self, stage_id: int, reason: str) -> None:
        """Cancel stage ``stage_id`` and the jobs that use it; their error gives ``reason``."""
        raise NotImplementedError

    def callback_hosts(self, conf: Dict[str, str]) -> Tuple[str, str]:
        """``(bind, advertised)``: the address the driver's control server listens on, and the
        one the TF nodes dial to reach it."""
        raise NotImplementedError

    def task_callback_hosts(self) -> Optional[Tuple[str, str]]:
        """``(bind, advertised)`` where this driver listens for plain Spark tasks' calls (a
        token desk, a stage canceller); None where tasks may not reach it (Spark Connect)."""
        return self.callback_hosts(self.conf())

    def unreachable(self, bind: str, advertised: str) -> Optional[str]:
        """Why executors cannot open a connection to ``advertised`` (a listener on ``bind``),
        or None when they can."""
        return None

    def thread(self, target: Callable[[], None], name: str) -> threading.Thread:
        """A daemon thread for Spark jobs that inherits this thread's Spark state."""
        from pyspark import InheritableThread
        session = getattr(self, "spark", None)
        return InheritableThread(target=target, name=name, daemon=True,
                                 **({"session": session} if self.connect else {}))


class ClassicBackend(SparkBackend):
    """A ``SparkContext`` in this process."""

    def __init__(self, sc: Any):
        self.sc = sc
        self.master = sc.master

    def conf(self) -> Dict[str, str]:
        return dict(self.sc.getConf().getAll())

    def default_fs(self) -> str:
        # the JVM's Hadoop configuration: spark.hadoop.* over the configuration files
        return self.sc._jsc.hadoopConfiguration().get("fs.defaultFS") or "file:///"

    def default_parallelism(self) -> int:
        return self.sc.defaultParallelism

    def user(self) -> str:
        return os.environ.get("HADOOP_USER_NAME") or self.sc.sparkUser() or getpass.getuser()

    def slots(self, profile: Any = None) -> Optional[int]:
        scala_sc = self.sc._jsc.sc()
        manager = scala_sc.resourceProfileManager()
        if profile is None:
            return int(scala_sc.maxNumConcurrentTasks(manager.defaultResourceProfile()))
        manager.addResourceProfile(profile._java_resource_profile)
        return int(scala_sc.maxNumConcurrentTasks(profile._java_resource_profile))

    def executors(self) -> Optional[int]:
        return max(0, len(self.sc._jsc.sc().statusTracker().getExecutorInfos()) - 1)

    def run_barrier_stage(self, num_tasks: int, task: Callable, group: str,
                          description: str, data: Any = None, profile: Any = None) -> list:
        self.sc.setJobGroup(group, description, interruptOnCancel=True)
        if data is None:
            data = self.sc.parallelize(range(num_tasks), num_tasks)
        elif hasattr(data, "sparkSession"):  # a DataFrame
            return _barrier_map_in_arrow(data, task, profile)
        return _with_profile(data.barrier().mapPartitions(task), profile).collect()

    def run_barrier_stage_with_outputs(self, num_tasks: int, task: Callable, group: str,
                                       description: str, data: Any, profile: Any = None
                                       ) -> Tuple[list, Any]:
        from pyspark import StorageLevel
        self.sc.setJobGroup(group, description, interruptOnCancel=True)
        stage = _with_profile(data.barrier().mapPartitions(task), profile).persist(
            StorageLevel.MEMORY_AND_DISK)
        stage.count()  # runs the TF cluster
        nodes = stage.filter(lambda row: len(row) == 4).collect()
        return nodes, stage.filter(lambda row: len(row) == 2)

    runs_node_jobs = True

    def run_node_job(self, worker_num: int, task: Callable, group: str, description: str,
                     profile: Any = None) -> list:
        self.sc.setJobGroup(group, description, interruptOnCancel=True)
        node = self.sc.parallelize([worker_num], 1).mapPartitions(task)
        return _with_profile(node, profile).collect()

    def preparing(self, group: str) -> bool:
        tracker = self.sc.statusTracker()
        for job_id in tracker.getJobIdsForGroup(group):
            job = tracker.getJobInfo(job_id)
            if job is None or job.status != "RUNNING" or len(job.stageIds) < 2:
                continue
            active = set(tracker.getActiveStageIds())
            if any(stage in active for stage in sorted(job.stageIds)[:-1]):
                return True
        return False

    def run_job(self, action: Callable[[], list], group: str, description: str) -> list:
        self.sc.setJobGroup(group, description, interruptOnCancel=True)
        return action()

    def cancel(self, group: str) -> None:
        self.sc.cancelJobGroup(group)

    def cancel_stage(self, stage_id: int, reason: str) -> None:
        self.sc._jsc.sc().cancelStage(stage_id, reason)

    def callback_hosts(self, conf: Dict[str, str]) -> Tuple[str, str]:
        host = conf.get("spark.driver.host") or "127.0.0.1"  # executors reach the driver there
        return conf.get("spark.driver.bindAddress") or host, host


#: The rows a node's barrier task returns under Connect (``tfspark._node.task.run_node``'s tuples).
NODE_RESULT_SCHEMA = "worker_num int, status string, value binary, report binary"


class ConnectBackend(SparkBackend):
    """A Spark Connect session: no SparkContext, no RDDs, no JVM on this side."""

    connect = True

    def __init__(self, spark: Any):
        self.spark = spark

    @functools.cached_property
    def master(self) -> str:  # asked of the server once, when needed (not by default_fs)
        return self._get("spark.master") or "?"

    def _get(self, key: str) -> Optional[str]:
        try:
            return self.spark.conf.get(key, None)
        except Exception:  # noqa: BLE001 - a setting the server will not show
            return None

    def conf(self) -> Dict[str, str]:
        try:
            return dict(self.spark.conf.getAll)
        except Exception:  # noqa: BLE001 - older servers: the settings tfspark reads
            keys = ("spark.master", "spark.driver.host", "spark.driver.bindAddress",
                    "spark.dynamicAllocation.enabled", "spark.task.cpus",
                    "spark.executor.instances", "spark.executor.cores", "spark.cores.max",
                    "spark.hadoop.fs.defaultFS", "spark.app.id", "spark.master.ui.port")
            return {k: v for k in keys if (v := self._get(k)) is not None}

    def default_fs(self) -> str:
        from tfspark import fs
        return self._get("spark.hadoop.fs.defaultFS") or fs.hadoop_conf().get(
            "fs.defaultFS", "file:///")

    def user(self) -> str:
        return os.environ.get("HADOOP_USER_NAME") or getpass.getuser()

    def slots(self, profile: Any = None) -> Optional[int]:
        return None  # no status tracker under Connect: the settings, or the stage, tell

    def executors(self) -> Optional[int]:
        return None

    def run_barrier_stage(self, num_tasks: int, task: Callable, group: str,
                          description: str, data: Any = None, profile: Any = None) -> list:
        self.spark.addTag(group)
        try:
            return _barrier_map_in_arrow(
                self.spark.range(0, num_tasks, 1, num_tasks) if data is None else data, task,
                profile)
        finally:
            self.spark.removeTag(group)

    def run_job(self, action: Callable[[], list], group: str, description: str) -> list:
        self.spark.addTag(group)
        try:
            return action()
        finally:
            self.spark.removeTag(group)

    def cancel(self, group: str) -> None:
        self.spark.interruptTag(group)

    def callback_hosts(self, conf: Dict[str, str]) -> Tuple[str, str]:
        """This client's address on the route to the Connect server (loopback for a local
        server), unless ``TFSPARK_CLIENT_HOST`` names the one executors should dial."""
        bind = _local_address_towards(getattr(self.spark.client, "host", "localhost"))
        return bind, os.environ.get(constants.CLIENT_HOST) or bind

    def task_callback_hosts(self) -> None:
        """None: a Connect client is dialed by the TF nodes it starts (which wait for it), not
        by every task of every stage."""
        return None

    def unreachable(self, bind: str, advertised: str) -> Optional[str]:
        """Ask one Spark task to connect to a listener on this client."""
        with socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET) as listener:
            listener.bind((bind, 0))
            listener.listen(8)
            port = listener.getsockname()[1]
            rows = self.spark.range(0, 1, 1, 1).mapInArrow(
                _probe_task(advertised, port, constants.CLIENT_PROBE_SECS),
                "failure string").collect()
        failure = rows[0].failure if rows else "the probe task returned nothing"
        return failure or None


def _with_profile(rdd: Any, profile: Any) -> Any:
    return rdd.withResources(profile) if profile is not None else rdd


def _barrier_map_in_arrow(df: Any, task: Callable, profile: Any = None) -> list:
    """The barrier stage over a DataFrame's partitions (classic or Connect)."""
    rows = df.mapInArrow(_arrow_task(task), NODE_RESULT_SCHEMA, barrier=True,
                         profile=profile).collect()
    return [(r.worker_num, r.status, r.value, r.report) for r in rows]


def _arrow_task(task: Callable[[Iterator], Iterator[Tuple[int, str, bytes, bytes]]]):
    """``task`` (a barrier ``mapPartitions`` function) as a ``mapInArrow`` function: it gets the
    partition's Arrow batches (training data, or ids that carry nothing)."""
    def run(batches):
        import pyarrow as pa
        for worker_num, status, value, report in task(batches):
            yield pa.RecordBatch.from_pydict(
                {"worker_num": [worker_num], "status": [status], "value": [value],
                 "report": [report]},
                schema=pa.schema([("worker_num", pa.int32()), ("status", pa.string()),
                                  ("value", pa.binary()), ("report", pa.binary())]))
        for _ in batches:  # whatever the task left unread
            pass
    return run



def _local_address_towards(host: str) -> str:
    """The local IP address this machine uses to reach ``host`` (no packet is sent)."""
    try:
        infos = socket.getaddrinfo(host, 15002, type=socket.SOCK_DGRAM)
        family, _, _, _, address = infos[0]
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            return sock.getsockname()[0]
    except OSError:
        return "127.0.0.1"


def _probe_task(host: str, port: int, timeout: float):
    """A ``mapInArrow`` function: one row, the reason ``host:port`` cannot be reached, or ""."""
    def run(batches):
        import pyarrow as pa
        for _ in batches:
            pass
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            failure = ""
        except OSError as e:
            failure = f"{type(e).__name__}: {e}"
        yield pa.RecordBatch.from_pydict({"failure": [failure]})
    return run
