"""Task side of a TF node: one task of the cluster's barrier stage, or its own Spark job.

The task registers with the driver, starts the node's own Python process (see
:mod:`tfspark._node.spawn` and :mod:`tfspark._node.process`: the Keras choice in its environment,
TensorFlow imported while the nodes meet), reserves its TF port, learns every node's address
from the driver (detached: through ``BarrierTaskContext.allGather``), and then hands the
process its context, with
``TF_CONFIG``, to run the user's ``main_fun``. It forwards that process's output lines to the
driver, stops it when the driver says so (or the driver goes away), and reports how it ended.

Never imports TensorFlow or ``pyspark.sql``: the Python worker that runs this stays light.
"""
from __future__ import annotations

import collections
import json
import os
import shutil
import sys
import tempfile
import threading
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, Iterator, Optional, Tuple

from tfspark import constants
from tfspark._feed.protocol import StageInput
from tfspark._node import fit_progress, tensorboard
from tfspark._node.context import NodeContext
from tfspark._node.ports import reserved_port
from tfspark._node.private_dir import SCRATCH_ENV, PrivateDir
from tfspark._node.spawn import (CONTEXT_FILE, ERROR, PAYLOAD_FILE, NodeProcess, exit_error,
                                 read_outcome, spawn)
from tfspark._node.zip_cache import importable_path
from tfspark._strategies.base import for_roles
from tfspark.control import ControlClient, Message
from tfspark.errors import FeedError
from tfspark.fs.credentials import NODE_TOKEN_FILE_ENV
from tfspark.roles import (EVALUATOR, TRAINING_ROLES, InputMode, Role, cluster_spec, is_chief,
                           num_training_nodes, tf_config)

if TYPE_CHECKING:
    from tfspark._node.stage_feeder import StageFeeder

#: How a node ended, as reported to the driver and returned from the Spark task (OK and ERROR
#: are also how its process ended: see :mod:`tfspark._node.spawn`).
STOPPED = "stopped"


@dataclass(frozen=True)
class NodePlan:
    """Everything a node's task needs, computed on the driver; plain values only."""

    roles: Tuple[Role, ...]
    driver_address: Optional[Tuple[str, int]]  # None: run detached (see DetachedReport)
    secret: bytes = field(repr=False)  # never in a repr: one debug log away from a leak
    payload: bytes = field(repr=False)  # cloudpickled (main_fun, args): the user's, maybe secrets
    env: Dict[str, str] = field(repr=False)  # the user's variables, maybe credentials
    default_fs: str
    working_dir: str
    log_dir: Optional[str]
    tensorboard: bool
    user: str
    input_mode: int  # InputMode value: 1 means nodes that train receive Spark-fed data
    stage_files: Dict[str, str]  # PSS: name -> TFRecord files to copy onto each worker
    hadoop_conf_dir: Optional[str]  # the driver's, for executors that have none
    echo_output: bool  # also copy node output to the executor's log (not in local mode,
    #                    where that log is the driver's terminal)
    attempt: int = 0  # which run of the TF cluster this is (0 first); see TFCluster.attempts
    max_restarts: int = 0  # also how often a PSS worker's server is restarted in place
    progress: bool = True  # the chief reports model.fit's progress (see tfspark._node.fit_progress)
    verbose: bool = False  # relay TF's C++ start-up/INFO log lines too (see quiet_line)
    stage_input: Optional[StageInput] = None  # the stage's partitions are training data
    full_training_nodes: int = 0  # chief + workers of the full cluster (0: this plan's roles)
    batch_policy: str = "global"  # on fewer training nodes: see NodeContext.per_worker_batch


def run_node(plan: NodePlan, partition: Iterator) -> Iterator[Tuple[int, str, bytes, bytes]]:
    """The barrier stage's ``mapPartitions`` function: yields ``(worker_num, status, value,
    report)`` -- ``report`` is a detached node's pickled messages (else empty). ``partition``
    is training data with ``plan.stage_input`` (see :mod:`tfspark._feed.stage`), else unused."""
    from pyspark import BarrierTaskContext

    task = BarrierTaskContext.get()
    worker_num = task.partitionId()
    executor_address = task.getTaskInfos()[worker_num].address
    yield from _run(plan, worker_num, executor_address.rsplit(":", 1)[0], executor_address,
                    task, partition)


def run_node_alone(plan: NodePlan, partition: Iterator) -> Iterator[Tuple[int, str, bytes, bytes]]:
    """A node's own one-task Spark job (see :mod:`tfspark._driver.node_jobs`): ``partition``
    holds its worker_num. Spark may run it again, elsewhere, after its executor was lost. Its
    host is this machine's address on the route to the driver (a plain task is not told its
    executor's)."""
    from pyspark import TaskContext

    worker_num = next(iter(partition))
    host = route_host(plan.driver_address[0])
    yield from _run(plan, worker_num, host, host, TaskContext.get(), iter(()))


def _run(plan: NodePlan, worker_num: int, host: str, executor_address: str, task: Any,
         partition: Iterator) -> Iterator[Tuple[int, str, bytes, bytes]]:
    node = _Node(plan, plan.roles[worker_num], host, executor_address)
    try:
        status = node.run(task, partition)
        yield from node.answers()  # inference in the stage: (key, result) pairs, in order
        yield status
    finally:
        node.close()


def route_host(driver_host: str) -> str:
    """This machine's address on the route to ``driver_host`` (no packet is sent)."""
    import socket
    family = socket.AF_INET6 if ":" in driver_host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect((driver_host, 9))
        return probe.getsockname()[0]


class DetachedReport:
    """What a detached node would have sent the driver live, returned with the stage's output
    instead: every message but the output lines, of which the last
    :data:`~tfspark.constants.DETACHED_OUTPUT_LINES`, and but progress steps (epochs are kept)."""

    def __init__(self):
        self.messages: list = []
        self.lines: collections.deque = collections.deque(maxlen=constants.DETACHED_OUTPUT_LINES)
        self._lock = threading.Lock()

    def keep(self, message: Message) -> None:
        with self._lock:
            if message["type"] == "log":
                self.lines.append(message)
            elif not (message["type"] == "progress" and message["event"].get("event") == "step"):
                self.messages.append(message)

    def pickled(self) -> bytes:
        """The messages in the order the driver replays them: output before the end."""
        import pickle
        with self._lock:
            body = [m for m in self.messages if m["type"] != "finished"]
            end = [m for m in self.messages if m["type"] == "finished"]
            return pickle.dumps(body + list(self.lines) + end)


def node_environment(plan: NodePlan, role: Role, gpus: Tuple[str, ...]) -> Dict[str, str]:
    """The environment of a node's process: this one's, plus TF settings, plus the user's ``env``.
    All of it is known before the rendezvous (the process starts during it); ``TF_CONFIG``, which
    needs every node's address, comes with the context (see :mod:`tfspark._node.process`).

    ``PYTHONPATH`` carries this worker's ``sys.path`` so files shipped with ``--py-files`` import
    in the node's process too (zips there, Spark's ``pyspark.zip`` among them, unpacked once:
    see :mod:`tfspark._node.zip_cache`).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(importable_path([p for p in sys.path if p]))
    env["PYTHONUNBUFFERED"] = "1"
    env[constants.TF_USE_LEGACY_KERAS] = constants.DEFAULT_LEGACY_KERAS
    if not plan.verbose:
        env.setdefault(constants.TF_CPP_MIN_LOG_LEVEL, constants.QUIET_TF_CPP_LOG_LEVEL)
    if role.job_name in TRAINING_ROLES:  # history, and streaming acks, either way
        env[fit_progress.NUM_WORKERS] = str(num_training_nodes(plan.roles))
        if plan.progress:
            env[fit_progress.QUIET_FIT] = "1"
    if gpus:  # exactly the GPUs Spark gave this task, and only the memory TF needs
        env[constants.CUDA_VISIBLE_DEVICES] = ",".join(gpus)
        env.setdefault(constants.TF_FORCE_GPU_ALLOW_GROWTH, "true")
    env.update(for_roles(plan.roles).node_env())
    if "HADOOP_CONF_DIR" not in env and plan.hadoop_conf_dir and os.path.isdir(
            plan.hadoop_conf_dir):
        env["HADOOP_CONF_DIR"] = plan.hadoop_conf_dir
    env.update(plan.env)
    env.pop(constants.TF_CONFIG, None)  # this executor's own, if any, is not the node's
    return env


def assigned_gpus(task: Any) -> Tuple[str, ...]:
    """The GPU addresses Spark assigned to ``task`` (none without a GPU resource)."""
    try:
        resources = task.resources()
    except Exception:  # noqa: BLE001 - a context without resources
        return ()
    gpu = resources.get("gpu")
    return tuple(str(a) for a in gpu.addresses) if gpu is not None else ()


class _Node:
    def __init__(self, plan: NodePlan, role: Role, host: str, executor_address: str):
        self.plan = plan
        self.role = role
        self.strategy = for_roles(plan.roles)
        self.host = host
        self.executor_address = executor_address
        self.stop_requested = threading.Event()
        self.process_ended = threading.Event()
        self.peers: Optional[list] = None  # every node's addresses, from the driver
        self.rejoining = False  # a lost node's task run again: it takes its first address
        self.refeeds: Tuple[int, ...] = ()  # ... and is sent these feeds again before it serves
        self._peers_known = threading.Event()  # set with them, or when stopped
        self.stop_reason = ""
        self.feeder: Optional["StageFeeder"] = None  # feeding in the stage: see answers()
        self._private = PrivateDir()  # every file of this task; removed in close()
        self.private_dir = self._private.path
        self.token_file = os.path.join(self.private_dir, "hdfs-delegation.tokens")
        self.detached = plan.driver_address is None
        self.report = DetachedReport()
        self.client = None if self.detached else ControlClient(
            plan.driver_address, plan.secret, self._on_driver_message)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        self._private.remove()

    def answers(self) -> Iterator[Tuple[Any, Any]]:
        """The node's answers to the stage's inference rows, as ``(key, result)`` pairs."""
        path = self.feeder.answers_path if self.feeder is not None else None
        if path is not None and os.path.exists(path):
            from tfspark._feed.stage import read_answers
            yield from read_answers(path)

    def _meet(self, task, address: str, feed_port: Optional[int]) -> Optional[list]:
        """Every node's TF address and feed port, in worker_num order (None if stopped first).
        The driver brokers them over the control channel; detached nodes, which have no
        channel, use Spark's allGather (which takes a second more)."""
        mine = {"address": address, "feed_port": feed_port}
        if self.client is None:
            return [json.loads(item) for item in task.allGather(json.dumps(mine))]
        self._send("address", **mine)
        self._peers_known.wait()
        return None if self.peers is None else list(self.peers)

    def _on_driver_message(self, message: Message) -> None:
        if message["type"] == "credentials":
            self._keep_tokens(message["tokens"])
        elif message["type"] == "peers":
            self.rejoining = bool(message.get("rejoin"))
            self.refeeds = tuple(message.get("feeds", ()))
            self.peers = message["nodes"]
            self._peers_known.set()
        elif message["type"] == "stop":
            self._request_stop(message.get("reason", "stopped by the driver"))
        elif message["type"] == "disconnected":
            self._request_stop("lost the connection to the driver")

    def _keep_tokens(self, url_strings: list) -> None:
        """Write the driver's HDFS delegation tokens where the node's process reads them
        (``$TFSPARK_TOKEN_FILE``, 0600 in this task's private folder, replaced whole): the
        first ones before the nodes meet, renewed or re-issued ones while it runs."""
        from tfspark.fs.tokens import Token, write_token_file
        write_token_file(self.token_file, [Token.from_url_string(s) for s in url_strings])

    def _request_stop(self, reason: str) -> None:
        if not self.stop_requested.is_set():
            self.stop_reason = reason
            self.stop_requested.set()
            self._peers_known.set()  # a node waiting to meet the others stops waiting

    def _send(self, message_type: str, **fields) -> None:
        message = dict(fields, type=message_type, worker_num=self.role.worker_num)
        if self.client is None:
            self.report.keep(message)
        else:
            self.client.send(message)

    def run(self, task, partition: Iterator) -> Tuple[int, str, bytes, bytes]:
        self._send("hello", label=self.role.label, host=self.host, attempt=task.attemptNumber())
        feeds = self.plan.input_mode == InputMode.SPARK and self.role.job_name in TRAINING_ROLES
        gpus = assigned_gpus(task)
        # the node's process starts now, importing while the nodes find each other
        with self._workdir() as workdir, self._started_early(workdir, gpus) as process, \
                ExitStack() as ports, reserved_port(self.host) as port, \
                (reserved_port(self.host) if feeds else nullcontext()) as feed_port:
            gathered = self._meet(task, f"{self.host}:{port}", feed_port)
            if gathered is not None and self.rejoining:
                port = self._take_first_port(ports, gathered)
            if gathered is None or port is None:  # stopped before the cluster formed
                self._send("finished", status=STOPPED, message=self.stop_reason)
                return self.role.worker_num, STOPPED, b"", b""
            addresses = [item["address"] for item in gathered]
            spec = cluster_spec(self.plan.roles, addresses)
            ctx = NodeContext(
                job_name=self.role.job_name, task_index=self.role.task_index,
                worker_num=self.role.worker_num,
                num_workers=num_training_nodes(self.plan.roles), cluster_spec=spec,
                tf_config=tf_config(spec, self.role), executor_id=self.executor_address,
                host=self.host, port=port, default_fs=self.plan.default_fs,
                working_dir=self.plan.working_dir,
                log_dir=tensorboard.log_dir(self.plan.log_dir, self.plan.tensorboard, workdir),
                user=self.plan.user,
                input_mode=self.plan.input_mode, feed_port=feed_port,
                shard_index=self.strategy.data_index(self.plan.roles, self.role),
                num_shards=len(self.strategy.data_nodes(self.plan.roles)),
                secret=self.plan.secret, stage_files=self.plan.stage_files,
                attempt=self.plan.attempt, gpus=gpus,
                full_num_workers=(self.plan.full_training_nodes
                                  or num_training_nodes(self.plan.roles)),
                batch_policy=self.plan.batch_policy, awaits_feeds=self.refeeds)
            with self._tensorboard(ctx) as tensorboard_url:
                self._send("started", address=f"{self.host}:{port}", cluster_spec=spec,
                           tensorboard_url=tensorboard_url,
                           feed_address=(self.host, feed_port) if feeds else None)
                feeder = self._feed_from_stage(task, gathered, ctx, partition) if (
                    self.plan.stage_input is not None) else None
                self.feeder = feeder
                if self._ends_by_barrier() and self.role.job_name not in (
                        self.strategy.finishers):
                    self._stop_after_training(task, after=feeder)
                status, fields, value = self._run_process(ctx, workdir, process)
                self.process_ended.set()
                if feeder is not None:
                    feeder.join(self.plan.stage_input.timeout + 60)
                    if feeder.error and status != ERROR:
                        status, fields, value = ERROR, {"message": feeder.error}, b""
        self._send("finished", status=status, **fields)
        if self._ends_by_barrier() and self.role.job_name in self.strategy.finishers:
            task.barrier()  # training is over on this node: see _stop_after_training
        return self.role.worker_num, status, value, self.report.pickled() if self.detached else b""

    def _take_first_port(self, ports: ExitStack, gathered: list) -> Optional[int]:
        """Rejoining, this node listens where its lost task did (the coordinator knows it by
        that address): that port, reserved, or None (and why, in stop_reason) if it is taken."""
        first = gathered[self.role.worker_num]["address"]
        port = int(first.rsplit(":", 1)[1])
        try:
            ports.enter_context(reserved_port(self.host, port))
        except OSError as e:
            self.stop_reason = f"cannot rejoin the training at {first}: {e}"
            return None
        return port

    def _ends_by_barrier(self) -> bool:
        """Detached, with nodes that serve until told to stop (ps, PSS workers, evaluator)."""
        return self.detached and any(r.job_name not in self.strategy.finishers
                                     for r in self.plan.roles)

    def _feed_from_stage(self, task, gathered, ctx: NodeContext, partition: Iterator
                         ) -> "StageFeeder":
        """Send this task's partition of the stage's input to the training nodes (a thread:
        their receivers run in the nodes' processes, started meanwhile)."""
        from tfspark._node.stage_feeder import StageFeeder  # Arrow, only when feeding
        def stopped() -> Optional[BaseException]:
            if self.stop_requested.is_set() or self.process_ended.is_set():
                return FeedError(f"{self.role.label} ended while its task was feeding: "
                                 f"{self.stop_reason or 'its process exited'}")
            return None

        def fed(delivered) -> None:
            self._send("fed", rows_per_node=delivered.rows_per_node,
                       validation_rows_per_node=delivered.validation_rows_per_node)

        feeder = StageFeeder(
            task, self.plan.stage_input, self.strategy.data_nodes(self.plan.roles), gathered,
            self.plan.secret, self.role, ctx.shard_index,
            (self.host, ctx.feed_port) if ctx.feed_port is not None else None, partition,
            self.private_dir, stopped, on_fed=fed, on_error=self._request_stop)
        feeder.start()
        return feeder

    def _stop_after_training(self, task, after: Optional["StageFeeder"] = None) -> None:
        """Detached, no driver tells a serving node (ps, PSS worker, evaluator) that training
        ended: the nodes that train say so through the stage's barrier, which each of them
        enters once done; a serving node enters it at once (after its share of the stage's
        own feed, ``after``), and stops when it opens."""
        def wait() -> None:
            if after is not None:
                after.join()
            try:
                task.barrier()
            except Exception:  # noqa: BLE001 - the stage is ending anyway
                return
            if self.role.job_name == EVALUATOR:
                self.stop_requested.wait(constants.DETACHED_EVALUATOR_GRACE_SECS)
            self._request_stop("training finished")

        threading.Thread(target=wait, name="tfspark-training-end", daemon=True).start()

    @contextmanager
    def _workdir(self) -> Iterator[str]:
        """The node process's folder (context, payload, outcome; PSS staged files, spills)."""
        workdir = tempfile.mkdtemp(prefix=f"tfspark-{self.role.job_name}-{self.role.task_index}-",
                                   dir=self.private_dir)
        try:
            yield workdir
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    @contextmanager
    def _started_early(self, workdir: str, gpus: Tuple[str, ...]) -> Iterator[NodeProcess]:
        """The node's process, started before the rendezvous so that its start-up (Python,
        TensorFlow's import) overlaps it; stopped on the way out if it never got its context."""
        process = self._spawn(workdir, gpus)
        try:
            yield process
        finally:
            process.discard()

    def _spawn(self, workdir: str, gpus: Tuple[str, ...]) -> NodeProcess:
        job_names = {r.job_name for r in self.plan.roles}
        serves = self.strategy.serves_only(self.role.job_name)
        env = node_environment(self.plan, self.role, gpus)
        env.setdefault(SCRATCH_ENV, os.path.join(workdir, "tmp"))
        env[NODE_TOKEN_FILE_ENV] = self.token_file  # exists once the driver sent tokens
        return spawn(workdir, env, self._send, label=self.role.label, verbose=self.plan.verbose,
                     echo=self.plan.echo_output, serves=serves,
                     reports_progress=not serves and is_chief(self.role, job_names))

    def _run_process(self, ctx: NodeContext, workdir: str, process: NodeProcess
                     ) -> Tuple[str, Dict[str, Any], bytes]:
        if self.stop_requested.is_set():
            return STOPPED, {"message": self.stop_reason}, b""
        restarts_in_place = 0
        while True:
            outcome = self._run_process_once(ctx, workdir, process)
            if not (self.strategy.restarts_in_place(self.role.job_name)
                    and outcome[1].get("restartable")
                    and restarts_in_place < self.plan.max_restarts):
                return outcome
            restarts_in_place += 1
            self._send("log", stream="stderr", line=(
                f"tfspark: {outcome[1]['message']}; restarting {self.role.label}'s TF server "
                f"in place ({restarts_in_place} of {self.plan.max_restarts}): the "
                "coordinator re-runs its lost steps"))
            process = self._spawn(workdir, ctx.gpus)

    def _run_process_once(self, ctx: NodeContext, workdir: str, process: NodeProcess
                          ) -> Tuple[str, Dict[str, Any], bytes]:
        import pickle
        for name, data in ((PAYLOAD_FILE, self.plan.payload), (CONTEXT_FILE, pickle.dumps(ctx))):
            path = os.path.join(workdir, name)
            if os.path.exists(path):  # left by a serving process restarted in place
                os.remove(path)
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
                f.write(data)  # the node's process reads, then deletes them
        process.go()
        stopped = process.wait(self.stop_requested)
        process.join_output()
        outcome = read_outcome(workdir, process.popen.returncode)
        if outcome is not None:
            return outcome
        if stopped:
            return STOPPED, {"message": self.stop_reason}, b""
        return exit_error(process.popen.returncode)

    @contextmanager
    def _tensorboard(self, ctx: NodeContext) -> Iterator[Optional[str]]:
        """Serve TensorBoard from the chief while the node runs, if asked to."""
        if not (self.plan.tensorboard and ctx.is_chief):
            yield None
            return
        with tensorboard.served(self.host, ctx.log_dir, self._send, self.role.label,
                                self.plan.verbose, self.plan.echo_output) as url:
            yield url
