"""One attempt at running the TF cluster: its barrier stage, control channel and node states.

An :class:`Attempt` starts the stage (one task per TF node, through a
:class:`~tfspark._driver.spark_backend.SparkBackend`, classic or Spark Connect; or one job per
node, :mod:`~tfspark._driver.node_jobs`, where training survives a lost node), serves the control
channel the nodes report to, keeps what the driver knows of each node, and records the first
failure, after which it stops every node. It never restarts anything:
:class:`tfspark._driver.cluster.TFCluster` decides, from the
failure's cause, whether to run another attempt.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import logging
import sys
import threading
import time
import uuid
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from tfspark import constants
from tfspark._driver.node_jobs import NodeJobs
from tfspark._driver.progress import TrainingProgress
from tfspark._driver.spark_backend import SparkBackend
from tfspark._feed.arrow_columns import FeedDataError
from tfspark._feed.protocol import INFERENCE
from tfspark._feed.spark_tasks import FeedError
from tfspark._node.spawn import ERROR, OK
from tfspark._node.task import STOPPED, NodePlan, run_node, run_node_alone
from tfspark.control import Connection, ControlServer, Message, new_secret
from tfspark.errors import NodeError, ReservationError, StageError, TFSparkError, raised_in_task
from tfspark._strategies.base import for_roles
from tfspark.roles import TRAINING_ROLES, Role, is_chief

logger = logging.getLogger(__name__)


class NodeState:
    """What the driver knows of one node in one attempt."""

    def __init__(self, role: Role):
        self.role = role
        self.host = "?"
        self.connection: Optional[Connection] = None
        self.feed_address: Optional[Tuple[str, int]] = None
        self.addresses: Optional[Dict[str, Any]] = None  # its TF address and feed port
        self.started = False
        self.fed: Optional[Dict[str, List[int]]] = None  # the stage's own feed, delivered
        self.status: Optional[str] = None  # OK, ERROR or STOPPED once finished
        self.message = ""
        self.traceback = ""
        self.restartable = False
        self.lost = False  # its executor was lost; training goes on without it (see Attempt)
        self.was_lost = False  # ... and it rejoined
        self.contact_lost = False  # the driver lost its connection while the attempt ran
        self.output: Deque[str] = collections.deque(maxlen=constants.OUTPUT_TAIL_LINES)

    def error(self, message: str, traceback_text: str = "", restartable: bool = False
              ) -> NodeError:
        return NodeError(self.role.job_name, self.role.task_index, self.host, message,
                         traceback_text, list(self.output), restartable=restartable)


class Attempt:
    """The ``number``-th run of the TF cluster (0 first)."""

    def __init__(self, number: int, roles: List[Role], backend: SparkBackend,
                 reservation_timeout: float, progress: TrainingProgress,
                 on_tensorboard: Callable[[str], None] = lambda url: None,
                 detached: bool = False, profile: Any = None, node_jobs: bool = False,
                 refeed: Optional[Callable[["Attempt", NodeState], None]] = None):
        self.number = number
        self.detached = detached  # no channel: nodes report through the stage's output
        self.profile = profile  # the stage's task resources (stage-level scheduling), if any
        self.nodes = {role.worker_num: NodeState(role) for role in roles}
        self.strategy = for_roles(roles)
        self.finishers = self.strategy.finishers
        self.backend = backend
        self.reservation_timeout = reservation_timeout
        self.changed = threading.Condition()
        self.failure: Optional[TFSparkError] = None
        self.job_group = f"tfspark-{uuid.uuid4().hex[:12]}"
        self.secret = new_secret()
        self.feeds = 0  # feeds started in this attempt (their ids)
        self._progress = progress
        self._on_tensorboard = on_tensorboard
        self._server: Optional[ControlServer] = None
        self._job_result: Optional[list] = None
        self._job_error: Optional[BaseException] = None
        self._job_done = threading.Event()
        # one Spark job per node (see tfspark._driver.node_jobs), and those that ended
        self._node_jobs = NodeJobs(backend, self.job_group, profile, self._on_node_job_end) \
            if node_jobs else None
        self._ended_jobs: Dict[int, list] = {}
        self._introduced = False  # every node was told the others' addresses
        # the feeds every training node holds, by feed id (what feeding.refeed sends again)
        self.delivered_feeds: Dict[int, Any] = {}
        self._refeed = refeed  # sends a rejoining node its share of the delivered feeds
        #: streaming micro-batches the chief reported trained (or skipped), by batch id
        self.stream_acks: Dict[int, Dict[str, Any]] = {}
        self._feed_groups: set = set()  # job groups/tags of feeding jobs still running
        self.outputs: Any = None  # inference in the stage: the RDD of the nodes' answers
        self._tokens: List[str] = []  # HDFS delegation tokens for the nodes (Kerberos)

    # ----------------------------------------------------------------------------- starting
    def start(self, plan: NodePlan, hosts: Tuple[str, str], data: Any = None) -> None:
        """Start the stage for ``plan`` (given this attempt's channel, on ``hosts``: bind,
        advertised) and wait until every node runs ``main_fun``; on failure, stop what started
        and raise. Detached, return once the stage is submitted: nothing reports before its
        end. ``data``: the stage's input (``plan.stage_input``), one partition per node."""
        plan = dataclasses.replace(plan, driver_address=None, secret=self.secret,
                                   attempt=self.number)
        if not self.detached:
            bind, advertised = hosts
            self._server = ControlServer(self.secret, self._on_message, host=bind,
                                         on_disconnect=self._on_disconnect).start()
            plan = dataclasses.replace(plan, driver_address=(advertised, self._server.address[1]))
        self._start_stage(plan, data)
        if not self.detached:
            self._await_reservation()

    def _start_stage(self, plan: NodePlan, data: Any) -> None:
        if self._node_jobs is not None:
            labels = [self.nodes[i].role.label for i in sorted(self.nodes)]
            self._node_jobs.start(sorted(self.nodes), functools.partial(run_node_alone, plan),
                                  labels, self.number)
            return
        answers = plan.stage_input is not None and plan.stage_input.mode == INFERENCE
        task = functools.partial(run_node, plan)
        description = (f"tfspark: TF cluster of {len(self.nodes)} nodes "
                       f"(attempt {self.number + 1})")

        def job() -> None:
            try:
                if answers:
                    self._job_result, self.outputs = \
                        self.backend.run_barrier_stage_with_outputs(
                            len(self.nodes), task, self.job_group, description, data,
                            self.profile)
                else:
                    self._job_result = self.backend.run_barrier_stage(
                        len(self.nodes), task, self.job_group, description, data, self.profile)
                self._replay_reports(self._job_result)
            except BaseException as e:  # noqa: B902 - reported by the cluster
                self._job_error = e
                self._on_stage_failed(e)
            finally:
                self._job_done.set()
                with self.changed:
                    self.changed.notify_all()

        self.backend.thread(job, "tfspark-cluster-job").start()

    def _on_node_job_end(self, worker_num: int, rows: Optional[list],
                         error: Optional[BaseException]) -> None:
        """A node's own job ended: its error fails the attempt as the barrier stage's would,
        unless the node was lost and training went on without it."""
        node = self.nodes[worker_num]
        if error is not None and node.lost:
            logger.info("tfspark: Spark ended the task of lost node %s: %s", node.role.label,
                        str(error).splitlines()[0] if str(error) else type(error).__name__)
        elif error is not None:
            if self._job_error is None:
                self._job_error = error
            self._on_stage_failed(error)
        with self.changed:
            self._ended_jobs[worker_num] = rows or []
            if len(self._ended_jobs) == len(self.nodes):
                self._job_result = [row for i in sorted(self._ended_jobs)
                                    for row in self._ended_jobs[i]]
                self._job_done.set()
            self.changed.notify_all()

    def _on_stage_failed(self, error: BaseException) -> None:
        """The stage failed: unless a node already said why, that is the attempt's failure --
        restartable when Spark lost an executor (its node may not have reported that yet)."""
        if self.failure is not None:
            return
        text = str(error)
        lost = next((line.strip() for line in text.splitlines()
                     if "ExecutorLostFailure" in line), None)
        if lost is not None:
            with self.changed:  # Spark may say it first: the lost node's dropped connection
                self.changed.wait_for(lambda: self.failure is not None,  # names what was lost
                                      constants.LOST_EXECUTOR_REPORT_SECS)
            if self.failure is None:
                self.fail(StageError(f"the TF cluster's Spark stage failed: {lost}",
                                     restartable=True))
        elif any(n.started for n in self.nodes.values()):
            self.fail(StageError(f"the TF cluster's Spark stage failed: "
                                 f"{spark_error_summary(error)}"))

    def _await_reservation(self) -> None:
        """Wait for every node to start, up to ``reservation_timeout`` -- counted from when the
        stage's input is ready (a shuffle of the training data may come first)."""
        deadline = time.monotonic() + self.reservation_timeout
        with self.changed:
            checked = time.monotonic()
            while not self._all_started() and self.failure is None and not self._job_done.is_set():
                self.changed.wait(min(1.0, max(0.0, deadline - time.monotonic())))
                now = time.monotonic()
                if now - checked >= 1.0 or now >= deadline:
                    checked = now
                    if self.backend.preparing(self.job_group):
                        deadline = now + self.reservation_timeout
                if now >= deadline:
                    break
            started = self._all_started()
        if started:
            return
        if self.failure is None and not self._job_done.is_set():
            waiting = [n.role.label for n in self.nodes.values() if not n.started]
            self.fail(ReservationError(
                f"{len(waiting)} of {len(self.nodes)} TF nodes did not start within "
                f"reservation_timeout={self.reservation_timeout}s (waiting for "
                f"{', '.join(waiting)}). Check that the application has {len(self.nodes)} free "
                "task slots and that executors can reach the driver."))
        self.abort()
        if self.failure is not None:
            raise self.failure
        raise ReservationError(f"the TF cluster's Spark job ended before all nodes started: "
                               f"{spark_error_summary(self._job_error)}") from self._job_error

    def _replay_reports(self, rows: list) -> None:
        """Detached nodes' messages, handled as if they had come live (output, progress,
        results, errors)."""
        import pickle
        for _, _, _, report in rows:
            for message in pickle.loads(report) if report else []:
                self._on_message(None, message)

    def _all_started(self) -> bool:
        return all(n.started for n in self.nodes.values())

    # ----------------------------------------------------------------------------- messages
    def _on_message(self, connection: Optional[Connection], message: Message) -> None:
        node = self.nodes[message["worker_num"]]
        kind = message["type"]
        if kind == "log":
            self._print(node, message["stream"], message["line"])
            return
        if kind == "progress":
            event = message["event"]
            if event.get("event") == "stream_batch":
                with self.changed:
                    self.stream_acks[int(event["batch_id"])] = event
                    self.changed.notify_all()
            self._progress.on_event(event)
            return
        with self.changed:
            if kind == "hello":
                if node.connection not in (None, connection) and node.status is None:
                    self._node_gone(node)  # Spark ran its task again before we saw it go
                node.host, node.connection = message["host"], connection
                if self._tokens and connection is not None:  # before the peers, on purpose
                    connection.send({"type": "credentials", "tokens": self._tokens})
                if self.failure is not None and connection is not None:
                    connection.send({"type": "stop", "reason": "the TF cluster has failed"})
                elif node.status is not None and connection is not None:
                    connection.send({"type": "stop", "reason": "this node has finished"})
            elif kind == "address" and self._introduced:  # a task Spark ran again
                self._rejoin(node, message["address"])
            elif kind == "address":
                node.addresses = {"address": message["address"],
                                  "feed_port": message["feed_port"]}
                self._introduce_when_all_known()
            elif kind == "fed":
                node.fed = {"rows": message["rows_per_node"],
                            "validation_rows": message["validation_rows_per_node"]}
            elif kind == "started":
                node.started = True
                node.feed_address = message.get("feed_address")
                if node.lost:
                    self._rejoined(node)
                if message.get("tensorboard_url"):
                    self._on_tensorboard(message["tensorboard_url"])
            elif kind == "finished":
                node.status, node.message = message["status"], message.get("message", "")
                node.traceback = message.get("traceback", "")
                node.restartable = bool(message.get("restartable"))
                self._on_finished(node)
            self.changed.notify_all()

    def hand_tokens(self, tokens: List[str]) -> None:
        """The HDFS delegation tokens (URL strings) every node gets: at its hello, and again
        whenever they change (a re-issue) while it runs."""
        with self.changed:
            changed, self._tokens = tokens != self._tokens, list(tokens)
            connections = [n.connection for n in self.nodes.values()
                           if n.connection is not None and n.status is None]
        if changed:
            for connection in connections:
                try:
                    connection.send({"type": "credentials", "tokens": self._tokens})
                except OSError:
                    pass  # its disconnection fails the attempt

    def _introduce_when_all_known(self) -> None:
        """Once every node has said where it listens, tell each node all of them: the nodes
        meet through the driver (Spark's allGather would add a second to every start)."""
        if any(n.addresses is None for n in self.nodes.values()):
            return
        peers = [self.nodes[i].addresses for i in sorted(self.nodes)]
        self._introduced = True
        for node in self.nodes.values():
            try:
                node.connection.send({"type": "peers", "nodes": peers})
            except OSError:
                pass  # its disconnection fails the attempt

    def _on_finished(self, node: NodeState) -> None:
        if node.status == ERROR:
            self.fail(node.error(node.message, node.traceback, node.restartable))
        elif node.status == STOPPED and node.role.job_name in self.finishers and not self.failure:
            self.fail(node.error(f"it was stopped: {node.message}"))
        elif self.training_done():
            self.stop_servers()

    def _on_disconnect(self, connection: Connection) -> None:
        with self.changed:
            for node in self.nodes.values():
                if node.connection is connection and node.status is None:
                    self._node_gone(node)
            self.changed.notify_all()

    def _node_gone(self, node: NodeState) -> None:
        """The driver lost ``node`` before it finished: fail the attempt (a restart can cure
        it), unless training goes on without it (see :meth:`_may_lose`)."""
        if self.failure is None:  # not one that a failed barrier stage's end took down
            node.contact_lost = True
        if self._may_lose(node):
            self._lose(node)
            return
        self.fail(node.error(
            "the driver lost contact with it before it finished (its executor or Python worker "
            "died, or was killed; see the executor's log)", restartable=True))

    def _may_lose(self, node: NodeState) -> bool:
        """Whether training goes on without ``node``: it runs as its own Spark job, its
        strategy trains on without nodes of its kind (PSS workers), and one of them is left."""
        job_name = node.role.job_name
        return (self._node_jobs is not None and node.started and self.failure is None
                and self.strategy.survives_loss(job_name)
                and any(self._alive(n) for n in self.nodes.values()
                        if n is not node and n.role.job_name == job_name))

    @staticmethod
    def _alive(node: NodeState) -> bool:
        return node.status is None and not node.lost and node.connection is not None

    def _lose(self, node: NodeState) -> None:
        node.lost, node.connection = True, None
        left, full = self._show_size()
        self._notice(f"tfspark: {node.role.label}'s executor on host {node.host} was lost; "
                     f"training goes on with {left} of {full} workers (the coordinator re-runs "
                     f"its steps); it rejoins if Spark runs its task again on {node.host}")

    def _rejoin(self, node: NodeState, address: str) -> None:
        """A lost node's task, run again by Spark, says where it could listen: it rejoins at
        its first address (the only one TF's coordinator knows it by), or is told to stop."""
        if self.failure is not None or not node.lost:
            return  # told to stop at its hello
        first = node.addresses["address"]
        why = None
        if address.rsplit(":", 1)[0] != first.rsplit(":", 1)[0]:
            why = (f"Spark ran its task again on another host ({address.rsplit(':', 1)[0]}), "
                   f"but TF's coordinator takes a lost worker back only at its first address "
                   f"({first})")
        elif self.feeds and self._refeed is None:
            why = "its share of the Spark-fed rows was lost with its executor"
        elif self.training_done():
            why = "training has ended"
        if why is not None:
            self._refuse(node, why)
            return
        self._send(node, {"type": "peers", "nodes": [self.nodes[i].addresses
                                                     for i in sorted(self.nodes)],
                          "rejoin": True, "feeds": list(self.delivered_feeds)})

    def _refuse(self, node: NodeState, why: str) -> None:
        """Tell a lost node's task, run again, that it does not rejoin (and the user why)."""
        node.lost = True
        self._notice(f"tfspark: {node.role.label} does not rejoin the training: {why}; "
                     "training goes on without it")
        self._send(node, {"type": "stop", "reason": f"not rejoining: {why}"})

    @staticmethod
    def _send(node: NodeState, message: Message) -> None:
        try:
            node.connection.send(message)
        except OSError:
            pass  # gone again: its disconnection says so

    def _rejoined(self, node: NodeState) -> None:
        """A lost node runs again at its first address; with Spark-fed rows, it is sent its
        share of them again (its TF server starts once it holds them)."""
        if self.delivered_feeds and self._refeed is not None:
            self.backend.thread(lambda: self._refeed(self, node), "tfspark-refeed").start()
        node.lost, node.was_lost = False, True
        left, full = self._show_size()
        self._notice(f"tfspark: {node.role.label} rejoined the training at "
                     f"{node.addresses['address']} ({left} of {full} workers)")

    def drop_rejoiner(self, node: NodeState, why: str) -> None:
        """A rejoining node could not be given its data: stop it; training goes on without it."""
        with self.changed:
            if node.status is None and node.connection is not None:
                self._refuse(node, why)

    def _show_size(self) -> Tuple[int, int]:
        """(training nodes left, all of them); shown by the progress line when fewer."""
        nodes = [self.nodes[r.worker_num] for r in self.strategy.data_nodes(
            [n.role for n in self.nodes.values()])]
        left = sum(1 for n in nodes if not n.lost)
        self._progress.set_size(left, len(nodes))
        return left, len(nodes)

    def _notice(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)  # what the user must see
        logger.info(text)

    def _print(self, node: NodeState, stream: str, line: str) -> None:
        node.output.append(line)
        self._progress.write(sys.stderr if stream == "stderr" else sys.stdout,
                             f"[{node.role.label}] {line}")

    # ----------------------------------------------------------------------------- state
    def training_done(self) -> bool:
        return all(n.status is not None for n in self.nodes.values()
                   if n.role.job_name in self.finishers)

    def nodes_done(self, job_name: str) -> bool:
        return all(n.status is not None for n in self.nodes.values()
                   if n.role.job_name == job_name)

    def lost_contact(self) -> Optional[str]:
        """What the driver lost, e.g. "worker:1's executor on host H was lost": the nodes whose
        connection dropped while the attempt ran (their executor or Python worker gone), not
        those stopped after it failed (a failed barrier stage kills every task); else None."""
        gone = [f"{n.role.label}'s executor on host {n.host}" for n in self.nodes.values()
                if n.contact_lost]
        if not gone:
            return None
        return " and ".join(gone) + (" was lost" if len(gone) == 1 else " were lost")

    def lost_nodes(self) -> Tuple[str, ...]:
        """The nodes this attempt lost and trained on without (labels; see :meth:`_may_lose`)."""
        return tuple(n.role.label for n in self.nodes.values() if n.lost or n.was_lost)

    @property
    def job_done(self) -> bool:
        return self._job_done.is_set()

    def reporting_node(self) -> NodeState:
        """The node that reports progress and trained micro-batches: the chief, else worker 0."""
        job_names = {n.role.job_name for n in self.nodes.values()}
        return next(n for n in self.nodes.values() if is_chief(n.role, job_names))

    def feed_nodes(self, listening: bool) -> List[NodeState]:
        """Nodes that receive fed rows, in share order (the strategy's ``data_nodes``), or,
        with ``listening``, every node with a feed receiver (also the PSS chief, told of each
        feed)."""
        if listening:
            return [n for n in self.nodes.values() if n.role.job_name in TRAINING_ROLES]
        roles = [n.role for n in self.nodes.values()]
        return [self.nodes[r.worker_num] for r in self.strategy.data_nodes(roles)]

    def stop_servers(self) -> None:
        """Training is done: stop the nodes that only serve (ps; PSS workers)."""
        for job_name in sorted({n.role.job_name for n in self.nodes.values()}):
            if self.strategy.serves_only(job_name):
                self.stop_nodes(job_name, reason="training finished")
        if self._node_jobs is not None:  # the tasks Spark holds to run lost nodes again
            self._node_jobs.cancel(n.role.worker_num for n in self.nodes.values()
                                   if n.lost and n.connection is None)

    def fail(self, error: TFSparkError) -> None:
        """Record the first failure and stop every node."""
        with self.changed:
            if self.failure is None:
                self.failure = error
                logger.error("tfspark: %s", str(error).splitlines()[0])
                self.stop_nodes(None, reason=f"the TF cluster failed: {str(error).splitlines()[0]}")
            self.changed.notify_all()

    def stop_nodes(self, job_name: Optional[str], reason: str) -> None:
        for node in self.nodes.values():
            if node.status is None and node.connection is not None and (
                    job_name is None or node.role.job_name == job_name):
                try:
                    node.connection.send({"type": "stop", "reason": reason})
                except OSError:
                    pass

    def wait_for(self, done: Callable[[], bool], deadline: Optional[float],
                 on_timeout: Optional[Callable[[], TFSparkError]]) -> None:
        """Wait until ``done()``, a failure, the stage's end, or ``deadline`` (monotonic time;
        past it, fail with ``on_timeout()`` if given)."""
        with self.changed:
            while not done() and self.failure is None and not self._job_done.is_set():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    if on_timeout is not None:
                        self.fail(on_timeout())
                    return
                self.changed.wait(remaining if remaining is not None else 1.0)

    def wait_for_stage_end(self) -> None:
        """Every node has been told to stop: its task ends within the stop grace period."""
        if self.detached and self.failure is not None:
            return  # no node was told anything: abort() cancels the stage
        if not self._job_done.wait(constants.NODE_STOP_GRACE_SECS + 60):
            self.fail(TFSparkError("the TF cluster's Spark job did not end after all nodes "
                                   "were stopped; it was cancelled"))

    def abort(self) -> None:
        """After a failure or at the end: cancel the stage if it still runs; stop the server."""
        if self.failure is not None:
            for group in list(self._feed_groups):
                self.backend.cancel(group)
        grace = 0 if self.detached else constants.NODE_STOP_GRACE_SECS + 5  # detached: no
        #                                                        channel to stop nodes gently
        if self.failure is not None and not self._job_done.wait(grace):
            if self._node_jobs is not None:
                self._node_jobs.cancel(self.nodes)
            else:
                self.backend.cancel(self.job_group)
            self._job_done.wait(30)
        if self._job_done.is_set() and self._server is not None:
            self._server.stop()
            self._server = None

    def results(self) -> List[Any]:
        """Each node's return value by worker_num (after a successful end), else raise."""
        if self.failure is not None:
            raise self.failure
        if self._job_error is not None:
            raise TFSparkError(f"the TF cluster's Spark job failed: "
                               f"{spark_error_summary(self._job_error)}") from self._job_error
        from pyspark import cloudpickle
        results: List[Any] = [None] * len(self.nodes)
        for worker_num, status, value, _ in self._job_result or []:
            results[worker_num] = cloudpickle.loads(value) if status == OK else None
        return results

    @property
    def server_address(self) -> Optional[Tuple[str, int]]:
        return self._server.address if self._server is not None else None

    def run_feed_job(self, action: Callable[[], list]) -> list:
        """Run a feeding Spark job; if a TF node fails meanwhile, cancel it and raise that."""
        group, outcome, done = f"{self.job_group}-feed-{self.feeds}", {}, threading.Event()
        self._feed_groups.add(group)

        def job() -> None:
            try:
                outcome["value"] = self.backend.run_job(action, group,
                                                         f"tfspark: feed {self.feeds}")
            except BaseException as e:  # noqa: B902 - raised below
                outcome["error"] = e
            finally:
                self._feed_groups.discard(group)
                done.set()
                with self.changed:
                    self.changed.notify_all()

        self.backend.thread(job, "tfspark-feed-job").start()
        with self.changed:
            while not done.is_set() and self.failure is None:
                self.changed.wait(1.0)
        if not done.is_set():
            self.backend.cancel(group)
            raise self.failure
        if "error" in outcome:
            if self.failure is not None:  # the feed failed because a node did
                raise self.failure
            error = raised_in_task(outcome["error"], (FeedDataError, FeedError)) or FeedError(
                f"feeding data to the TF nodes failed: {spark_error_summary(outcome['error'])}")
            error.__cause__ = outcome["error"]
            self.fail(error)  # the nodes would wait for this data forever
            self.abort()
            raise error
        failed = data_error(outcome["value"])
        if failed is not None:  # a deterministic data error, returned rather than retried
            self.fail(failed)
            self.abort()
            raise failed
        return outcome["value"]


def data_error(rows: list) -> Optional[FeedDataError]:
    """The first data error a feeding task reported in its output rows (see
    :func:`tfspark._feed.spark_tasks.send_train_partition`), if any."""
    for row in rows:
        message = row.get("error") if isinstance(row, dict) else getattr(row, "error", None)
        if message:
            return FeedDataError(message)
    return None


def spark_error_summary(error: Optional[BaseException], max_lines: int = 30) -> str:
    """The useful part of a Spark job error: the Python traceback from the executor if any,
    without the JVM stack trace."""
    text = str(error)
    marker = "An exception was thrown from the Python worker"
    if marker in text:
        text = text[text.index(marker):]
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("at ")]
    return "\n".join(lines[:max_lines])
