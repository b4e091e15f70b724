"""Driver side: reserve Spark executors as a TF cluster, watch it, and collect its results.

``TFCluster.run`` starts one barrier stage with one task per TF node (so Spark gang-schedules
the whole cluster), serves the control channel the nodes report to, and returns once every node
has its ``TF_CONFIG`` and is running ``main_fun``. ``shutdown`` waits for the nodes to finish,
stops the parameter servers and evaluator, and returns each node's return value, or raises the
first node's failure as a :class:`~tfspark.errors.NodeError`.
"""
from __future__ import annotations

import collections
import dataclasses
import enum
import functools
import getpass
import logging
import os
import pickle
import re
import sys
import threading
import time
import uuid
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from . import constants, preflight, spark_feed
from .context import resolve_path
from .control import Connection, ControlServer, Message, new_secret
from .errors import NodeError, ReservationError, TFSparkError
from .feed_protocol import INFERENCE, TRAIN
from .node import ERROR, OK, STOPPED, NodePlan, run_node
from .roles import (EVALUATOR, PS, TRAINING_ROLES, WORKER, Role, data_nodes,
                    self_finishing_roles)

logger = logging.getLogger(__name__)


class InputMode(enum.IntEnum):
    """How training data reaches TF: read by TF itself, or fed from Spark RDDs/DataFrames."""

    TENSORFLOW = 0
    SPARK = 1


class _NodeState:
    """What the driver knows of one node."""

    def __init__(self, role: Role):
        self.role = role
        self.host = "?"
        self.connection: Optional[Connection] = None
        self.feed_address: Optional[Tuple[str, int]] = None
        self.started = False
        self.status: Optional[str] = None  # OK, ERROR or STOPPED once finished
        self.message = ""
        self.traceback = ""
        self.output: Deque[str] = collections.deque(maxlen=constants.OUTPUT_TAIL_LINES)

    def error(self, message: str, traceback_text: str = "") -> NodeError:
        return NodeError(self.role.job_name, self.role.task_index, self.host, message,
                         traceback_text, list(self.output))


class TFCluster:
    """A TensorFlow cluster running on Spark executors. Create it with :meth:`TFCluster.run`."""

    def __init__(self, sc: Any, roles: List[Role], reservation_timeout: float):
        self._sc = sc
        self._nodes = {role.worker_num: _NodeState(role) for role in roles}
        self._finishers = self_finishing_roles(roles)
        self._reservation_timeout = reservation_timeout
        self._changed = threading.Condition()
        self._print_lock = threading.Lock()
        self._failure: Optional[TFSparkError] = None
        self._job_group = f"tfspark-{uuid.uuid4().hex[:12]}"
        self._job_result: Optional[list] = None
        self._job_error: Optional[BaseException] = None
        self._job_done = threading.Event()
        self._server: Optional[ControlServer] = None
        self._results: Optional[List[Any]] = None
        self.tensorboard_url: Optional[str] = None
        self._input_mode = InputMode.TENSORFLOW
        self._feeds = 0

    # ----------------------------------------------------------------------------- starting
    @classmethod
    def run(cls, sc: Any, main_fun: Callable[[Any, Any], Any], args: Any, num_executors: int,
            num_ps: int = 0, tensorboard: bool = False,
            input_mode: InputMode = InputMode.TENSORFLOW, log_dir: Optional[str] = None, *,
            master_node: Optional[str] = None, eval_node: bool = False,
            reservation_timeout: float = 600, env: Optional[Dict[str, str]] = None,
            stage_files: Optional[Dict[str, str]] = None) -> "TFCluster":
        """Start ``main_fun(args, ctx)`` on ``num_executors`` Spark tasks as one TF cluster.

        Parameters
        ----------
        sc : the application's SparkContext.
        main_fun : runs on every node as ``main_fun(args, ctx)`` in a fresh Python process
            (``ctx`` is a :class:`~tfspark.context.NodeContext`); its return value comes back
            from :meth:`shutdown`.
        args : any picklable value handed to ``main_fun``.
        num_executors : number of TF nodes = barrier tasks; Spark needs that many task slots.
        num_ps : parameter servers (ParameterServerStrategy); needs ``master_node="chief"``.
        tensorboard : serve TensorBoard on ``log_dir`` from the chief (or worker 0).
        input_mode : ``InputMode.TENSORFLOW`` (TF reads its own data) or ``InputMode.SPARK``
            (feed RDDs/DataFrames with :meth:`train` and :meth:`inference`).
        log_dir : TensorBoard/log directory, resolved like ``ctx.absolute_path``.
        master_node : ``"chief"`` to make one node the chief, else worker 0 leads.
        eval_node : add one evaluator node (outside the cluster spec, as TF expects).
        reservation_timeout : seconds to wait for all nodes to start before giving up.
        env : extra environment variables for the nodes' processes, set before TF is imported.
            tfspark sets ``TF_USE_LEGACY_KERAS=1`` (tf-keras) unless ``env`` sets it; pass
            ``{"TF_USE_LEGACY_KERAS": "0"}`` to run Keras 3 (custom training loops only).
        stage_files : ParameterServerStrategy only: ``{name: TFRecord dir or glob}`` (HDFS or
            local). Before its server starts, each worker copies its shard of the files (file
            ``i`` to worker ``i % num_workers``) to local disk, where the chief's ``dataset_fn``
            reads them via ``ctx.staged_files(name)``.

        The positional order of the first eight parameters is TensorFlowOnSpark's.

        Returns
        -------
        The running cluster; call :meth:`shutdown` to wait for it and get the results.
        """
        roles = preflight.check_arguments(num_executors, num_ps, master_node, eval_node,
                                          reservation_timeout, env, input_mode,
                                          tuple(InputMode))
        if stage_files and not num_ps:
            raise preflight.PreflightError("stage_files is for ParameterServerStrategy workers "
                                           "(num_ps > 0); MWMS nodes read their files with "
                                           "tfspark.data.tfrecord_dataset")
        if tensorboard and not log_dir:
            raise preflight.PreflightError("tensorboard=True needs a log_dir to serve")
        conf = preflight.spark_conf(sc)
        preflight.check_dynamic_allocation(conf)
        from pyspark import cloudpickle
        payload = preflight.check_pickles(cloudpickle.dumps, main_fun, args)
        preflight.wait_for_slots(num_executors, conf, sc.master,
                                 functools.partial(preflight.current_slots, sc),
                                 reservation_timeout, feeding=input_mode == InputMode.SPARK,
                                 current_executors=functools.partial(
                                     preflight.current_executors, sc))

        cluster = cls(sc, roles, reservation_timeout)
        cluster._input_mode = InputMode(input_mode)
        default_fs = sc._jsc.hadoopConfiguration().get("fs.defaultFS") or "file:///"
        user = os.environ.get("HADOOP_USER_NAME") or sc.sparkUser() or getpass.getuser()
        plan = NodePlan(
            roles=tuple(roles), driver_address=cluster._start_server(conf),
            secret=cluster._secret, payload=payload, env=dict(env or {}),
            default_fs=default_fs, working_dir=os.getcwd(),
            log_dir=resolve_path(log_dir, default_fs, os.getcwd(), user) if log_dir else None,
            tensorboard=tensorboard, user=user, input_mode=int(input_mode),
            stage_files={name: resolve_path(path, default_fs, os.getcwd(), user)
                         for name, path in (stage_files or {}).items()},
            hadoop_conf_dir=os.environ.get("HADOOP_CONF_DIR"),
            echo_output=not re.fullmatch(r"local(\[.*\])?", sc.master))
        cluster._start_job(plan)
        cluster._await_reservation()
        return cluster

    def _start_server(self, conf: Dict[str, str]):
        self._secret = new_secret()
        host = conf.get("spark.driver.host") or "127.0.0.1"
        bind = conf.get("spark.driver.bindAddress") or host
        self._server = ControlServer(self._secret, self._on_message, host=bind,
                                     on_disconnect=self._on_disconnect).start()
        return host, self._server.address[1]

    def _start_job(self, plan: NodePlan) -> None:
        from pyspark import InheritableThread

        def job() -> None:
            try:
                self._sc.setJobGroup(self._job_group, f"tfspark: TF cluster of {len(self._nodes)}"
                                     " nodes", interruptOnCancel=True)
                nodes = self._sc.parallelize(range(len(self._nodes)), len(self._nodes))
                self._job_result = nodes.barrier().mapPartitions(
                    functools.partial(run_node, plan)).collect()
            except BaseException as e:  # noqa: B902 - reported by shutdown()
                self._job_error = e
            finally:
                self._job_done.set()
                with self._changed:
                    self._changed.notify_all()

        InheritableThread(target=job, name="tfspark-cluster-job", daemon=True).start()

    def _await_reservation(self) -> None:
        deadline = time.monotonic() + self._reservation_timeout
        with self._changed:
            while not self._all_started() and self._failure is None and not self._job_done.is_set():
                if not self._changed.wait(max(0.0, deadline - time.monotonic())):
                    break
            started = self._all_started()
        if started:
            return
        if self._failure is None and not self._job_done.is_set():
            waiting = [n.role.label for n in self._nodes.values() if not n.started]
            self._fail(ReservationError(
                f"{len(waiting)} of {len(self._nodes)} TF nodes did not start within "
                f"reservation_timeout={self._reservation_timeout}s (waiting for "
                f"{', '.join(waiting)}). Check that the application has {len(self._nodes)} free "
                "task slots and that executors can reach the driver."))
        self._abort()
        if self._failure is not None:
            raise self._failure
        raise ReservationError(f"the TF cluster's Spark job ended before all nodes started: "
                               f"{_spark_error_summary(self._job_error)}") from self._job_error

    def _all_started(self) -> bool:
        return all(n.started for n in self._nodes.values())

    # ----------------------------------------------------------------------------- messages
    def _on_message(self, connection: Connection, message: Message) -> None:
        node = self._nodes[message["worker_num"]]
        kind = message["type"]
        if kind == "log":
            self._print(node, message["stream"], message["line"])
            return
        with self._changed:
            if kind == "hello":
                node.host, node.connection = message["host"], connection
                if self._failure is not None:
                    connection.send({"type": "stop", "reason": "the TF cluster has failed"})
            elif kind == "started":
                node.started = True
                node.feed_address = message.get("feed_address")
                if message.get("tensorboard_url"):
                    self.tensorboard_url = message["tensorboard_url"]
                    logger.warning("tfspark: TensorBoard at %s", self.tensorboard_url)
            elif kind == "finished":
                node.status, node.message = message["status"], message.get("message", "")
                node.traceback = message.get("traceback", "")
                self._on_finished(node)
            self._changed.notify_all()

    def _on_finished(self, node: _NodeState) -> None:
        if node.status == ERROR:
            self._fail(node.error(node.message, node.traceback))
        elif node.status == STOPPED and node.role.job_name in self._finishers and not self._failure:
            self._fail(node.error(f"it was stopped: {node.message}"))
        elif self._training_done():
            self._stop_servers()

    def _on_disconnect(self, connection: Connection) -> None:
        with self._changed:
            for node in self._nodes.values():
                if node.connection is connection and node.status is None:
                    self._fail(node.error(
                        "the driver lost contact with it before it finished (its executor or "
                        "Python worker died, or was killed; see the executor's log)"))
            self._changed.notify_all()

    def _print(self, node: _NodeState, stream: str, line: str) -> None:
        out = sys.stderr if stream == "stderr" else sys.stdout
        with self._print_lock:
            node.output.append(line)
            out.write(f"[{node.role.label}] {line}\n")
            out.flush()

    def _training_done(self) -> bool:
        return all(n.status is not None for n in self._nodes.values()
                   if n.role.job_name in self._finishers)

    def _stop_servers(self) -> None:
        """Training is done: stop the nodes that only serve (ps; PSS workers)."""
        for job_name in (PS, WORKER):
            if job_name not in self._finishers:
                self._stop_nodes(job_name, reason="training finished")

    def _fail(self, error: TFSparkError) -> None:
        """Record the first failure and stop every node (call with ``_changed`` held)."""
        with self._changed:
            if self._failure is None:
                self._failure = error
                logger.error("tfspark: %s", str(error).splitlines()[0])
                self._stop_nodes(None, reason=f"the TF cluster failed: {str(error).splitlines()[0]}")
            self._changed.notify_all()

    def _stop_nodes(self, job_name: Optional[str], reason: str) -> None:
        for node in self._nodes.values():
            if node.status is None and node.connection is not None and (
                    job_name is None or node.role.job_name == job_name):
                try:
                    node.connection.send({"type": "stop", "reason": reason})
                except OSError:
                    pass

    # ----------------------------------------------------------------------------- feeding
    def train(self, data: Any, num_epochs: int = 1, feed_timeout: float = 600) -> None:
        """Feed an RDD or DataFrame to the chief and workers for training (``InputMode.SPARK``).

        Runs one Spark job over ``data``; its tasks stream their partitions to the training
        nodes, which spill them to local disk, so ``num_epochs`` passes never recompute ``data``.
        Returns when every row is stored on a node (training goes on; call :meth:`shutdown`).

        Row ``i`` of partition ``p`` goes to training node ``(p + i) % n``: each node gets an
        equal share of every partition, so uneven or empty partitions are fine.
        ``feed_timeout`` bounds how long a feeding task waits for a node to take its data.
        """
        if isinstance(num_epochs, bool) or not isinstance(num_epochs, int) or num_epochs < 1:
            raise preflight.PreflightError(f"num_epochs must be an int >= 1, got {num_epochs!r}")
        plan = self._feed_plan(data, TRAIN, feed_timeout)
        if spark_feed.is_dataframe(data):
            rows = [(r.node, r.rows, r.schema) for r in self._run_feed_job(
                lambda: spark_feed.vectors_as_arrays(data).mapInArrow(
                    functools.partial(spark_feed.dataframe_train_task, plan),
                    "node int, rows long, schema binary").collect())]
        else:
            rows = [(node, count, schema) for counts, schema in self._run_feed_job(
                lambda: data.mapPartitionsWithIndex(
                    functools.partial(spark_feed.rdd_train_task, plan)).collect())
                for node, count in enumerate(counts)]
        rows_per_node = [sum(count for node, count, _ in rows if node == i)
                         for i in range(len(plan.addresses))]
        logger.info("tfspark: feed %d delivered rows per node %s", plan.feed_id, rows_per_node)
        listeners = self._feed_nodes(listening=True)
        spark_feed.tell_nodes(dataclasses.replace(
            plan, addresses=tuple(tuple(n.feed_address) for n in listeners),
            labels=tuple(n.role.label for n in listeners)),
            {"type": "end", "feed_id": plan.feed_id, "rows_per_node": rows_per_node,
             "num_epochs": num_epochs, "schema": next((s for *_, s in rows if s), b"")},
            failure=lambda: self._failure)

    def inference(self, data: Any, feed_timeout: float = 600) -> Any:
        """Feed ``data`` to the nodes for inference; an RDD with one result per input row.

        Lazy like any RDD: partitions are sent when an action runs. Partition ``p`` goes whole to
        training node ``p % n``, whose ``main_fun`` answers its rows in order with
        ``feed.batch_results``; results keep the partition order of ``data``.
        """
        plan = self._feed_plan(data, INFERENCE, feed_timeout)
        if spark_feed.is_dataframe(data):
            results = spark_feed.vectors_as_arrays(data).mapInArrow(
                functools.partial(spark_feed.dataframe_inference_task, plan), "result binary")
            return results.rdd.map(lambda row: pickle.loads(row.result))
        return data.mapPartitionsWithIndex(
            functools.partial(spark_feed.rdd_inference_task, plan))

    def _feed_plan(self, data: Any, mode: str, feed_timeout: float) -> "spark_feed.FeedPlan":
        if self._input_mode != InputMode.SPARK:
            raise preflight.PreflightError("train()/inference() feed data to the nodes: start "
                                           "the cluster with input_mode=InputMode.SPARK")
        if not (spark_feed.is_dataframe(data) or hasattr(data, "mapPartitionsWithIndex")):
            raise preflight.PreflightError(f"data must be an RDD or a DataFrame, got {type(data)}")
        if not isinstance(feed_timeout, (int, float)) or feed_timeout <= 0:
            raise preflight.PreflightError(f"feed_timeout must be a positive number of seconds, "
                                           f"got {feed_timeout!r}")
        if self._failure is not None:
            raise self._failure
        slots = preflight.current_slots(self._sc)
        if slots <= len(self._nodes):
            raise preflight.PreflightError(
                f"InputMode.SPARK feeds data with a second Spark job while the {len(self._nodes)}"
                f" TF nodes hold {len(self._nodes)} task slots, but the application has {slots} "
                "slots in all: none is free for it. Give the application more executor cores "
                "than num_executors (e.g. spark.executor.cores=2).")
        trainers = self._feed_nodes(listening=False)
        self._feeds += 1
        return spark_feed.FeedPlan(
            feed_id=self._feeds, addresses=tuple(tuple(n.feed_address) for n in trainers),
            labels=tuple(n.role.label for n in trainers), secret=self._secret, mode=mode,
            timeout=float(feed_timeout))

    def _feed_nodes(self, listening: bool) -> List[_NodeState]:
        """Nodes that receive fed rows, in share order (:func:`tfspark.roles.data_nodes`), or,
        with ``listening``, every node with a feed receiver (also the PSS chief, told of each
        feed)."""
        if listening:
            return [n for n in self._nodes.values() if n.role.job_name in TRAINING_ROLES]
        return [self._nodes[r.worker_num] for r in data_nodes([n.role for n in self._nodes.values()])]

    def _run_feed_job(self, collect: Callable[[], list]) -> list:
        """Run a feeding Spark job; if a TF node fails meanwhile, cancel it and raise that."""
        from pyspark import InheritableThread
        group, outcome, done = f"{self._job_group}-feed-{self._feeds}", {}, threading.Event()

        def job() -> None:
            try:
                self._sc.setJobGroup(group, f"tfspark: feed {self._feeds}", interruptOnCancel=True)
                outcome["value"] = collect()
            except BaseException as e:  # noqa: B902 - raised below
                outcome["error"] = e
            finally:
                done.set()
                with self._changed:
                    self._changed.notify_all()

        InheritableThread(target=job, name="tfspark-feed-job", daemon=True).start()
        with self._changed:
            while not done.is_set() and self._failure is None:
                self._changed.wait(1.0)
        if not done.is_set():
            self._sc.cancelJobGroup(group)
            raise self._failure
        if "error" in outcome:
            error = spark_feed.FeedError(f"feeding data to the TF nodes failed: "
                                         f"{_spark_error_summary(outcome['error'])}")
            error.__cause__ = outcome["error"]
            self._fail(error)  # the nodes would wait for this data forever
            self._abort()
            raise error
        return outcome["value"]

    # ----------------------------------------------------------------------------- finishing
    def shutdown(self, timeout: Optional[float] = None, grace_secs: float = 30.0) -> List[Any]:
        """Wait for the cluster to finish and return each node's ``main_fun`` return value.

        Parameters
        ----------
        timeout : seconds to wait for the chief and workers to finish; ``None`` waits as long as
            training runs (a failed or lost node still ends the wait at once).
        grace_secs : once training is done, how long the evaluator may keep running before it is
            stopped. Parameter servers are stopped as soon as training is done.

        Returns
        -------
        A list indexed by ``ctx.worker_num``: each node's return value (``None`` for nodes that
        were stopped, such as parameter servers).

        Raises
        ------
        NodeError : a node's ``main_fun`` raised, its process died, or its executor was lost.
        TFSparkError : ``timeout`` passed, or the Spark job failed.
        """
        if self._results is not None:
            return self._results
        if self._input_mode == InputMode.SPARK and self._failure is None:
            self._tell_feeds_done()
        try:
            self._wait_for(self._training_done, timeout,
                           lambda: TFSparkError(f"TF training did not finish within "
                                                f"timeout={timeout}s; the cluster was stopped"))
            with self._changed:
                self._stop_servers()
            self._wait_for(lambda: all(n.status is not None for n in self._nodes.values()
                                       if n.role.job_name == EVALUATOR), grace_secs, None)
            with self._changed:
                self._stop_nodes(EVALUATOR, reason=f"training finished {grace_secs}s ago")
            # Every node has been told to stop; its task ends within the stop grace period.
            if not self._job_done.wait(constants.NODE_STOP_GRACE_SECS + 60):
                self._fail(TFSparkError("the TF cluster's Spark job did not end after all nodes "
                                        "were stopped; it was cancelled"))
        finally:
            self._abort()
        if self._failure is not None:
            raise self._failure
        if self._job_error is not None:
            raise TFSparkError(f"the TF cluster's Spark job failed: "
                               f"{_spark_error_summary(self._job_error)}") \
                from self._job_error
        from pyspark import cloudpickle
        results: List[Any] = [None] * len(self._nodes)
        for worker_num, status, value in self._job_result or []:
            results[worker_num] = cloudpickle.loads(value) if status == OK else None
        self._results = results
        return results

    def _tell_feeds_done(self) -> None:
        """Tell the training nodes that no more data will come (ends next_batch loops)."""
        trainers = [n for n in self._nodes.values()
                    if n.role.job_name in TRAINING_ROLES and n.status is None and n.feed_address]
        plan = spark_feed.FeedPlan(0, tuple(tuple(n.feed_address) for n in trainers),
                                   tuple(n.role.label for n in trainers), self._secret,
                                   TRAIN, timeout=30.0)
        for node in range(len(trainers)):
            try:
                spark_feed.tell_nodes(dataclasses.replace(
                    plan, addresses=plan.addresses[node:node + 1],
                    labels=plan.labels[node:node + 1]), {"type": "done"},
                    failure=lambda: self._failure)
            except (OSError, TFSparkError):
                pass  # that node has finished already

    def _wait_for(self, done: Callable[[], bool], timeout: Optional[float],
                  on_timeout: Optional[Callable[[], TFSparkError]]) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while not done() and self._failure is None and not self._job_done.is_set():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    if on_timeout is not None:
                        self._fail(on_timeout())
                    return
                self._changed.wait(remaining if remaining is not None else 1.0)

    def _abort(self) -> None:
        """After a failure or at the end: cancel the Spark job if it still runs; stop the server."""
        if self._failure is not None and not self._job_done.wait(
                constants.NODE_STOP_GRACE_SECS + 5):
            self._sc.cancelJobGroup(self._job_group)
            self._job_done.wait(30)
        if self._job_done.is_set() and self._server is not None:
            self._server.stop()
            self._server = None


def _spark_error_summary(error: BaseException, max_lines: int = 30) -> str:
    """The useful part of a Spark job error: the Python traceback from the executor if any,
    without the JVM stack trace."""
    text = str(error)
    marker = "An exception was thrown from the Python worker"
    if marker in text:
        text = text[text.index(marker):]
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("at ")]
    return "\n".join(lines[:max_lines])
