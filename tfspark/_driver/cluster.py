"""Driver side: reserve Spark executors as a TF cluster, watch it, and collect its results.

``TFCluster.run`` starts the cluster as one :class:`~tfspark._driver.attempt.Attempt` (a barrier
stage with one task per TF node, so Spark gang-schedules the whole cluster) and returns once every
node has its ``TF_CONFIG`` and is running ``main_fun``. ``shutdown`` waits for the nodes to finish,
stops the parameter servers and evaluator, and returns each node's return value.

When an attempt fails for a cause a restart can cure (``NodeError.restartable``: a node's process
killed by a signal, its executor lost, a peer's death seen by TF), and fewer than
``max_restarts`` restarts ran, the cluster stops what is left of the attempt and runs a new one
(a new stage: fresh executors, ports and ``TF_CONFIG``; ``ctx.attempt`` counts), feeding it again
every RDD/DataFrame fed so far. Restarts happen inside ``train`` and ``shutdown``, which wait on
the cluster. Anything else -- ``main_fun`` raising, a timeout, a bad setting -- is raised as is.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, TypeVar

from tfspark import constants
from tfspark._driver import feeding, preflight, standalone, streaming
from tfspark._driver.attempt import Attempt
from tfspark._driver.node_tokens import NodeTokens, hdfs_paths
from tfspark._driver.progress import TrainingProgress
from tfspark._driver.spark_backend import SparkBackend, backend_for
from tfspark._feed.protocol import INFERENCE
from tfspark._node.context import resolve_path
from tfspark._node.task import NodePlan
from tfspark._strategies.base import for_roles
from tfspark.errors import NodeError, StageError, TFSparkError, attempts_text
from tfspark.roles import EVALUATOR, InputMode, Role, num_training_nodes, with_fewer_workers

logger = logging.getLogger(__name__)



T = TypeVar("T")


@dataclass(frozen=True)
class ClusterConfig:
    """How a TF cluster runs, decided once by :meth:`TFCluster.run` (what each restart reuses)."""

    backend: SparkBackend
    roles: Tuple[Role, ...]
    conf: Dict[str, str]  # the application's Spark settings
    reservation_timeout: float
    max_restarts: int
    input_mode: InputMode
    hosts: Tuple[str, str] = ("127.0.0.1", "127.0.0.1")  # (bind, advertised) for the nodes
    detached: bool = False  # the executors cannot reach this (Connect) client: see run()
    feeds_in_stage: bool = False  # feed_mode="stage": see run()
    requests: Optional[Dict[str, float]] = None  # resources=: see run()
    profile: Any = None  # the nodes' stage's ResourceProfile, for requests
    tokens: Optional[NodeTokens] = None  # HDFS delegation tokens for the nodes (Kerberos)
    min_workers: Optional[int] = None  # restart on fewer workers, down to this many: see run()
    slot_wait: float = 30.0  # how long a restart waits for every lost slot to come back
    node_jobs: bool = False  # each node a Spark job of its own: see _runs_node_jobs()


@dataclass(frozen=True)
class AttemptSummary:
    """One run of the TF cluster, as ``TFCluster.attempts`` lists it."""

    number: int  # 0 for the first; ``ctx.attempt`` on its nodes
    cause: Optional[str]  # why it failed, one line; None while it runs or once it succeeded
    restartable: bool  # whether that cause is one a restart can cure
    workers: int = 0  # the nodes that trained on data in it, at its start (chief + workers;
    #                   under ParameterServerStrategy, the workers): its size
    lost: Tuple[str, ...] = ()  # nodes lost while it ran, which training went on without


class TFCluster:
    """A TensorFlow cluster running on Spark executors. Create it with :meth:`TFCluster.run`."""

    def __init__(self, config: ClusterConfig, plan: NodePlan):
        self._config = config
        self._backend = config.backend
        self._tokens = config.tokens  # kept current while the cluster runs
        self._roles = list(config.roles)
        self._plan = plan  # with the stage's input once feed_mode="stage" has it
        self._progress = TrainingProgress(enabled=plan.progress)
        self._attempts: List[Attempt] = []
        self._feeds: List[feeding.Feed] = []
        self._stage_data: Any = None  # feed_mode="stage": the first train()'s data
        #: feed_mode="stage": (the stage's data, its StageInput) for a cluster of these roles
        self._stage_input_of: Optional[Callable[[List[Role]], Tuple[Any, Any]]] = None
        self._results: Optional[List[Any]] = None
        self._shut_down = False  # shutdown() was called: no more feeds
        self._stream: Optional[streaming.StreamingTraining] = None  # train_stream's query
        self._tracking: Any = None  # the job's MLflow run (tfspark.tracking), if asked for
        self.tensorboard_url: Optional[str] = None

    # ----------------------------------------------------------------------------- starting
    @classmethod
    def run(cls, sc: Any, main_fun: Callable[[Any, Any], Any], args: Any, num_executors: int,
            num_ps: int = 0, tensorboard: bool = False,
            input_mode: InputMode = InputMode.TENSORFLOW, log_dir: Optional[str] = None, *,
            master_node: Optional[str] = None, eval_node: bool = False,
            reservation_timeout: float = 600, env: Optional[Dict[str, str]] = None,
            stage_files: Optional[Dict[str, str]] = None,
            max_restarts: int = 2, progress: bool = True, verbose: bool = False,
            feed_mode: str = "auto", resources: Optional[Dict[str, float]] = None,
            min_workers: Optional[int] = None, slot_wait: float = 30.0,
            batch_policy: str = "global", mlflow: Any = None) -> "TFCluster":
        """Start ``main_fun(args, ctx)`` on ``num_executors`` Spark tasks as one TF cluster.

        Parameters
        ----------
        sc : the application's SparkContext.
        main_fun : runs on every node as ``main_fun(args, ctx)`` in a fresh Python process
            (``ctx`` is a :class:`~tfspark._node.context.NodeContext`); its return value comes back
            from :meth:`shutdown`.
        args : any picklable value handed to ``main_fun``.
        num_executors : number of TF nodes = barrier tasks; Spark needs that many task slots.
        num_ps : parameter servers (ParameterServerStrategy); needs ``master_node="chief"``.
        tensorboard : serve TensorBoard on ``log_dir`` from the chief (or worker 0); without a
            ``log_dir``, on a folder of the chief's own, ``ctx.log_dir``, gone when it ends.
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
        max_restarts : how many times the TF cluster may be restarted after a failure a restart
            can cure (a node's process killed, its executor lost); ``0`` fails at the first one.
            ``main_fun`` raising is never restarted. To resume rather than redo, train with
            ``ctx.backup_and_restore(path)`` (Keras) or :class:`tfspark.backup.BackupDir`.
            A ParameterServerStrategy worker's server is restarted in place up to as many times.
        progress : show the chief's ``model.fit`` progress live on the driver (epoch, step,
            loss and metrics, rows/s, ETA; see :mod:`tfspark._driver.progress`) and run ``fit`` on the
            nodes with ``verbose=0`` unless it is given. The per-epoch values are kept either
            way: :attr:`history`.
        verbose : also show TensorFlow's C++ log lines from the nodes (start-up, oneDNN, CUDA
            probing, coordination service); hidden by default. The nodes' own prints, Python
            warnings and errors are always shown, and executors' logs keep every line.
        feed_mode : ``InputMode.SPARK`` only: how :meth:`train` brings the data to the nodes.

            * ``"job"``: the cluster starts now; each ``train()`` runs a Spark job whose tasks
              stream the data to the nodes. Needs one task slot more than the nodes hold, and
              executors that can reach this driver (under Spark Connect, this client).
            * ``"stage"``: the cluster starts at the first ``train()``, with that call's data
              (repartitioned into one partition per node) as its barrier stage's own input:
              no slot beyond the nodes' (e.g. 2 executors x 1 core train 2 workers), and each
              training node keeps its own partition on its own host. One ``train()`` or
              ``inference()`` per cluster (give ``train`` all epochs).
            * ``"auto"`` (default): ``"job"`` when the application has a task slot to spare
              and its executors can reach this driver, else ``"stage"``.
        resources : what each TF node's task asks for, e.g. ``{"gpu": 1}`` or
            ``{"gpu": 1, "cpus": 4}``: the TF cluster's stage gets its own task resources
            (stage-level scheduling, standalone/YARN/Kubernetes), so other jobs of the
            application (feeding, ETL) need no GPU amount. Executors must have the resource
            (``spark.executor.resource.gpu.amount`` and a discovery script). Without it, the
            stage's tasks take the application's ``spark.task.*`` amounts. Either way a node's
            process sees exactly the GPUs Spark assigned to its task (``ctx.gpus``).
        min_workers : MultiWorkerMirroredStrategy: when a restart cannot get back every lost
            node's task slot within ``slot_wait`` seconds (an executor lost for good), restart
            on the slots there are, with fewer workers, as long as at least ``min_workers``
            nodes train (chief + workers); the workers resume from the backup
            (``ctx.backup_and_restore``), each with its share of the data dealt again over the
            new count. Every restart first waits ``slot_wait`` for the full size, so a cluster
            that shrank grows back at its next restart. ``None`` (default): restarts wait for
            every slot, as ``reservation_timeout`` allows.
        slot_wait : see ``min_workers``.
        batch_policy : on fewer workers, ``"global"`` keeps the global batch (each worker's
            batch grows) or ``"per_worker"`` keeps each worker's batch (scale the learning rate
            with ``ctx.scaled_learning_rate``); see ``ctx.per_worker_batch``.
        mlflow : track the job in MLflow (``pip install tfspark[mlflow]``): ``True``, an
            experiment name, or a dict of ``experiment_name``, ``run_name``, ``run_id``,
            ``tracking_uri``, ``tags``, ``log_model``. One run per job (the active run if there
            is one), logged from the driver: the settings and plain ``args`` as params, every
            epoch's metrics, restarts, and the last exported SavedModel as a pyfunc model
            (:mod:`tfspark.tracking`).

        The positional order of the first eight parameters is TensorFlowOnSpark's.

        Returns
        -------
        The running cluster; call :meth:`shutdown` to wait for it and get the results.
        """
        roles = preflight.check_arguments(num_executors, num_ps, master_node, eval_node,
                                          reservation_timeout, env, input_mode,
                                          tuple(InputMode))
        tracking_options = _tracking_options(mlflow)
        preflight.check_elastic(min_workers, slot_wait, batch_policy, roles)
        if stage_files and not for_roles(roles).stages_files:
            raise preflight.PreflightError("stage_files is for ParameterServerStrategy workers "
                                           "(num_ps > 0); MWMS nodes read their files with "
                                           "tfspark.data.tfrecord_dataset")
        if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
            raise preflight.PreflightError(f"max_restarts must be an int >= 0, got "
                                           f"{max_restarts!r}")
        if feed_mode not in ("auto", "job", "stage"):
            raise preflight.PreflightError(f"feed_mode must be 'auto', 'job' or 'stage', got "
                                           f"{feed_mode!r}")
        backend = backend_for(sc)
        conf = backend.conf()
        preflight.check_dynamic_allocation(conf)
        requests = preflight.check_resources(resources, conf, backend.master) \
            if resources is not None else None
        profile = backend.resource_profile(requests) if requests else None
        from pyspark import cloudpickle
        payload = preflight.check_pickles(cloudpickle.dumps, main_fun, args)
        default_fs, user = backend.default_fs(), backend.user()
        plan = NodePlan(
            roles=tuple(roles), driver_address=("", 0), secret=b"", payload=payload,
            env=dict(env or {}), default_fs=default_fs, working_dir=os.getcwd(),
            log_dir=resolve_path(log_dir, default_fs, os.getcwd(), user) if log_dir else None,
            tensorboard=tensorboard, user=user, input_mode=int(input_mode),
            stage_files={name: resolve_path(path, default_fs, os.getcwd(), user)
                         for name, path in (stage_files or {}).items()},
            hadoop_conf_dir=os.environ.get("HADOOP_CONF_DIR"),
            echo_output=not re.fullmatch(r"local(\[.*\])?", backend.master),
            max_restarts=max_restarts, progress=bool(progress), verbose=bool(verbose),
            full_training_nodes=num_training_nodes(roles), batch_policy=batch_policy)
        # a token for each Kerberized NameNode the job names, or the error, before any node
        tokens = NodeTokens(hdfs_paths(default_fs, conf, [plan.log_dir,
                                                          *plan.stage_files.values()]))
        hosts = backend.callback_hosts(conf)
        detached = _executors_cannot_reach(backend, hosts, InputMode(input_mode), feed_mode)
        in_stage = input_mode == InputMode.SPARK and (feed_mode == "stage" or (
            feed_mode == "auto" and _auto_feeds_in_stage(backend, conf, len(roles), detached)))
        cluster = cls(ClusterConfig(backend, tuple(roles), conf, reservation_timeout, max_restarts,
                                    InputMode(input_mode), hosts, detached, in_stage, requests,
                                    profile, tokens, min_workers, float(slot_wait),
                                    _runs_node_jobs(backend, conf, roles, detached, in_stage)),
                      plan)
        if tracking_options is not None:
            cluster._track(tracking_options, args, num_ps, master_node, eval_node, input_mode,
                           max_restarts, min_workers)
        if in_stage:
            logger.info("tfspark: the TF cluster starts at train(), with the data as its "
                        "stage's input (feed_mode='stage')")
            return cluster
        try:
            with cluster._stopped_on_interrupt():
                cluster._start_attempt()
                cluster._on_current_attempt(lambda attempt: None)
        except BaseException as e:
            cluster._end_tracking(e)  # the MLflow run ends FAILED, not left running
            raise
        return cluster

    def _track(self, options: Dict[str, Any], args: Any, num_ps: int,
               master_node: Optional[str], eval_node: bool, input_mode: Any,
               max_restarts: int, min_workers: Optional[int]) -> None:
        """Start (or continue) the job's MLflow run and log its settings (tfspark.tracking)."""
        from tfspark import tracking
        try:
            self._tracking = tracking.JobTracking(options)
        except Exception as e:  # noqa: BLE001 - unreachable server, bad experiment...
            raise preflight.PreflightError(f"could not start an MLflow run: {e}") from e
        strategy = for_roles(self._roles)
        self._tracking.replicas = strategy.size(self._roles) if not num_ps else 1
        self._tracking.log_params(dict({
            "num_executors": len(self._roles), "num_ps": num_ps, "master_node": master_node,
            "eval_node": eval_node, "strategy": strategy.name,
            "workers": strategy.size(self._roles), "input_mode": InputMode(input_mode).name,
            "feed_mode": self.feed_mode, "max_restarts": max_restarts,
            "min_workers": min_workers}, **tracking.plain_args(args)))
        self._progress.listeners.append(self._tracking.on_event)

    def _end_tracking(self, failure: Optional[BaseException]) -> None:
        if self._tracking is not None:
            tracking, self._tracking = self._tracking, None
            tracking.finish(failure)

    def __enter__(self) -> "TFCluster":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """``with TFCluster.run(...) as cluster:`` -- on a normal exit, :meth:`shutdown` (wait for
        training to finish); if the block raised, stop every node at once instead."""
        if exc_type is None:
            self.shutdown()
        elif self._results is None:
            self._stop(f"the with-block raised {exc_type.__name__}")

    @contextlib.contextmanager
    def _stopped_on_interrupt(self) -> Iterator[None]:
        """Ctrl-C (or a notebook's "interrupt kernel") while tfspark waits: stop every node,
        cancel tfspark's Spark jobs and free the driver's port before the interrupt goes on."""
        try:
            yield
        except KeyboardInterrupt:
            self._stop("interrupted (KeyboardInterrupt)")
            raise

    def _stop(self, reason: str) -> None:
        """Stop the running attempt now: its nodes, its Spark jobs, its control channel."""
        if not self._attempts:
            return
        attempt = self._attempts[-1]
        attempt.fail(TFSparkError(f"the TF cluster was stopped: {reason}"))
        self._end_tracking(attempt.failure)
        attempt.abort()
        self._progress.close()
        if self._tokens is not None:
            self._tokens.stop()

    @property
    def attempts(self) -> List[AttemptSummary]:
        """Every run of the TF cluster so far, the current one last, with why each failed."""
        summaries = []
        for attempt in self._attempts:
            failure = attempt.failure
            summaries.append(AttemptSummary(
                attempt.number, _cause(failure) if failure is not None else None,
                bool(getattr(failure, "restartable", False)),
                attempt.strategy.size([n.role for n in attempt.nodes.values()]),
                attempt.lost_nodes()))
        return summaries

    @property
    def feed_mode(self) -> Optional[str]:
        """How :meth:`train` feeds this cluster (``InputMode.SPARK``): ``"job"`` or ``"stage"``,
        what ``feed_mode="auto"`` chose; None when TF reads its own data."""
        if self._config.input_mode != InputMode.SPARK:
            return None
        return "stage" if self._config.feeds_in_stage else "job"

    @property
    def history(self) -> List[Dict[str, float]]:
        """The chief's ``model.fit`` metrics, one dict per finished epoch: ``epoch`` (1-based),
        ``loss`` and every compiled metric (``val_*`` too), ``rows`` (all workers') and
        ``rows_per_sec`` when tfspark's datasets feed ``fit``, and ``secs``. Filled live while
        training runs."""
        return self._progress.history

    def _wait_for_slots(self, nodes: int, feeding: bool, timeout: Optional[float] = None
                        ) -> None:
        config = self._config
        timeout = config.reservation_timeout if timeout is None else timeout
        if config.profile is not None:  # the nodes' slots under their own profile
            preflight.wait_for_slots(nodes, config.conf, self._backend.master,
                                     lambda: self._backend.slots(config.profile), timeout,
                                     current_executors=self._backend.executors,
                                     requests=config.requests)
            return
        preflight.wait_for_slots(nodes, config.conf, self._backend.master,
                                 self._backend.slots, timeout,
                                 feeding=feeding, current_executors=self._backend.executors)

    def _roles_of_next_attempt(self, feeding: bool) -> List[Role]:
        """The full cluster's roles, once its slots are there; on a restart with
        ``min_workers``, after ``slot_wait`` without them, fewer workers on the slots left."""
        config, full = self._config, list(self._config.roles)
        if not self._attempts or config.min_workers is None:
            self._wait_for_slots(len(full), feeding)
            return full
        try:
            self._wait_for_slots(len(full), feeding, timeout=config.slot_wait)
            return full
        except preflight.PreflightError as short:
            slots = (self._backend.slots(config.profile) if config.profile is not None
                     else self._backend.slots())
            fewer = with_fewer_workers(full, (slots or 0) - int(feeding))
            last = self._attempts[-1]
            lost = last.lost_contact() or _cause(last.failure)
            if fewer is None or num_training_nodes(fewer) < config.min_workers:
                raise preflight.PreflightError(
                    f"{short}. The TF cluster lost a node ({lost}) and cannot continue on fewer "
                    f"than min_workers={config.min_workers} training nodes: "
                    f"{num_training_nodes(fewer or [])} fit on the {slots or 0} task slots "
                    f"left after waiting {config.slot_wait:g}s (slot_wait)") from None
            notice = (f"tfspark: continuing on {num_training_nodes(fewer)} of "
                      f"{num_training_nodes(full)} workers: {lost}")
            print(notice, file=sys.stderr, flush=True)
            logger.info(notice)
            return fewer

    def _start_attempt(self) -> None:
        """Run the TF cluster once more, and feed it every RDD/DataFrame fed so far (or, with
        ``feed_mode="stage"``, give it the first train()'s data as its input again).

        Raises only errors that are not the attempt's failure (the attempt records those, and
        :meth:`_on_current_attempt` decides what follows)."""
        config = self._config
        roles = self._roles_of_next_attempt(feeding=config.input_mode == InputMode.SPARK
                                            and not config.feeds_in_stage)
        if len(roles) != len(self._roles) and self._stage_input_of is not None:
            self._stage_data, stage_input = self._stage_input_of(roles)  # dealt over them
            self._plan = dataclasses.replace(self._plan, stage_input=stage_input)
        self._roles = roles
        strategy = for_roles(roles)
        self._progress.set_size(strategy.size(roles), strategy.size(config.roles))
        attempt = Attempt(len(self._attempts), self._roles, self._backend,
                          config.reservation_timeout, self._progress, self._on_tensorboard,
                          detached=config.detached, profile=config.profile,
                          node_jobs=config.node_jobs,
                          refeed=feeding.refeed)
        self._attempts.append(attempt)
        if self._tokens is not None and self._tokens.current:
            attempt.hand_tokens(self._tokens.current)
            self._tokens.keep_current(lambda tokens: self._attempts[-1].hand_tokens(tokens))
        try:
            attempt.start(dataclasses.replace(self._plan, roles=tuple(roles)), config.hosts,
                          self._stage_data)
            if config.feeds_in_stage:
                if self._feeds:  # the stage's own rows are delivered before anything follows
                    feeding.await_stage_feed(attempt)  # (a restart inside shutdown() too)
                return
            for feed in self._feeds:
                feeding.deliver(attempt, feed)
        except TFSparkError:
            if attempt.failure is None:
                raise

    def _on_current_attempt(self, step: Callable[[Attempt], T]) -> T:
        """Run ``step`` on the running attempt. While attempts fail for a cause a restart can
        cure, and restarts remain, restart the cluster and run ``step`` on the new attempt."""
        while True:
            attempt = self._attempts[-1]
            try:
                if attempt.failure is not None:
                    raise attempt.failure
                return step(attempt)
            except TFSparkError:
                if attempt.failure is None:
                    raise
                attempt.abort()
                self._raise_unless_restartable(attempt.failure)
                notice = (f"tfspark: restarting the TF cluster ({len(self._attempts)} of "
                          f"{self._config.max_restarts}): {_cause(attempt.failure)}")
                print(notice, file=sys.stderr, flush=True)  # progress the user must see
                logger.info(notice)
                if self._tracking is not None:
                    self._tracking.on_restart(len(self._attempts), _cause(attempt.failure))
                self._start_attempt()

    def _raise_unless_restartable(self, failure: TFSparkError) -> None:
        if may_restart(failure, len(self._attempts), self._config.max_restarts):
            return
        if len(self._attempts) == 1:
            raise failure
        raise final_error(failure, [_cause(a.failure) for a in self._attempts]) from (
            None if isinstance(failure, NodeError) else failure)

    def _on_tensorboard(self, url: str) -> None:
        self.tensorboard_url = url
        logger.warning("tfspark: TensorBoard at %s", url)

    # ----------------------------------------------------------------------------- feeding
    def train(self, data: Any, num_epochs: int = 1, feed_timeout: float = 600,
              validation_data: Any = None) -> None:
        """Feed an RDD or DataFrame to the chief and workers for training (``InputMode.SPARK``).

        Runs one Spark job over ``data``; its tasks stream their partitions to the training
        nodes, which spill them to local disk, so ``num_epochs`` passes never recompute ``data``.
        Returns when every row is stored on a node (training goes on; call :meth:`shutdown`).

        Each partition is dealt out to the training nodes in contiguous runs of rows, an equal
        share (to one row) to each, so uneven or empty partitions are fine.
        ``feed_timeout`` bounds how long a feeding task waits for a node to take its data.

        ``validation_data`` (an RDD or DataFrame like ``data``) is fed after it, dealt the same
        way; on the nodes ``feed.validation_dataset(batch_size)`` serves each node's share for
        ``model.fit(..., validation_data=...)``, so ``val_*`` metrics cover exactly these rows.

        If the cluster is restarted, ``data`` is fed again to the new nodes (Spark recomputes it
        unless it is cached): every node gets its whole share of every feed again.
        """
        if isinstance(num_epochs, bool) or not isinstance(num_epochs, int) or num_epochs < 1:
            raise preflight.PreflightError(f"num_epochs must be an int >= 1, got {num_epochs!r}")
        if getattr(data, "isStreaming", False):
            raise preflight.PreflightError(
                "train() takes a static RDD/DataFrame; for a streaming DataFrame use "
                "cluster.train_stream(df, checkpoint_location=...)")
        timeout = self._check_feed(data, feed_timeout)
        if validation_data is not None:
            self._check_feed(validation_data, feed_timeout)
        feed = feeding.Feed(data, num_epochs, timeout, validation_data)
        if self._config.feeds_in_stage:
            self._check_not_started()
            self._stage_input_of = lambda roles: feeding.stage_training_input(feed, len(roles))
            self._stage_data, stage_input = self._stage_input_of(self._roles)
            self._plan = dataclasses.replace(self._plan, stage_input=stage_input)
            self._feeds.append(feed)
            with self._stopped_on_interrupt():
                self._start_attempt()
                self._on_current_attempt(lambda attempt: None)
            return
        with self._stopped_on_interrupt():
            self._on_current_attempt(lambda attempt: feeding.deliver(attempt, feed))
        self._feeds.append(feed)

    def train_stream(self, df: Any, checkpoint_location: str, *,
                     trigger: Optional[Dict[str, Any]] = None, query_name: Optional[str] = None,
                     feed_timeout: float = 600, batch_timeout: float = 3600
                     ) -> streaming.StreamingTraining:
        """Train on a streaming DataFrame: start a Structured Streaming query whose every
        micro-batch is fed to the chief and workers and trained exactly once.

        On the nodes, ``main_fun`` loops ``for batch in ctx.micro_batches(model, backup_dir):
        model.fit(batch.dataset(64), epochs=1)`` (see
        :meth:`~tfspark.NodeContext.micro_batches`). Each micro-batch's ``foreachBatch`` returns
        -- and Spark commits it -- only once the chief has trained it and backed it up with its
        batch id, so a restarted query (same ``checkpoint_location``) or TF cluster neither
        trains a micro-batch twice nor skips one, and a slow cluster makes the next micro-batch
        wait (its rows stay in the source). See :mod:`tfspark._driver.streaming`.

        Parameters
        ----------
        df : a streaming DataFrame (``spark.readStream...``); columns as :meth:`train` takes.
        checkpoint_location : the query's checkpoint folder (HDFS, or a path the driver keeps).
        trigger : ``DataStreamWriter.trigger``'s argument as a dict, e.g. ``{"processingTime":
            "10 seconds"}`` or ``{"availableNow": True}``; default: as soon as data arrives.
        query_name : the query's name (Spark UI, ``spark.streams``).
        feed_timeout : as in :meth:`train`, per micro-batch.
        batch_timeout : seconds a micro-batch may take to train before the cluster is stopped.

        Returns
        -------
        A :class:`~tfspark.StreamingTraining`: ``stop()``, ``awaitTermination()``, ``history``
        (one entry per micro-batch, the newest 10,000), ``query`` (Spark's ``StreamingQuery``). The nodes' loops
        end when the query ends; then call :meth:`shutdown`, which also stops a query still
        running (after the micro-batch in hand).
        """
        if self._backend.connect:
            raise preflight.PreflightError(
                "train_stream() needs a classic SparkSession: under Spark Connect, foreachBatch "
                "runs in a Python process of the server, away from this TF cluster")
        streaming.check_options(df, checkpoint_location, trigger, batch_timeout)
        timeout = self._check_feed(df, feed_timeout)
        if self._config.feeds_in_stage:
            raise preflight.PreflightError(
                "train_stream() feeds each micro-batch with a Spark job beside the TF nodes: "
                "start the cluster with feed_mode='job' (it needs a task slot beyond the TF "
                "nodes', e.g. spark.executor.cores=2)")
        if self._stream is not None:
            raise preflight.PreflightError("this TF cluster already trains on a streaming query "
                                           "(one per cluster)")
        options = streaming.StreamOptions(checkpoint_location, trigger, query_name, timeout,
                                          float(batch_timeout))
        training = streaming.StreamingTraining(self._end_stream, self._unrecoverable_failure)
        self._progress.streaming = True  # before the query starts: its first batch may be quick
        self._progress.listeners.append(training.on_event)
        if self._tracking is not None:
            self._tracking.streaming = True
        try:
            training.start(df, options, self._on_stream_attempt)  # raises before any batch
        except BaseException:
            self._progress.listeners.remove(training.on_event)
            self._progress.streaming = False
            raise
        self._stream = training
        logger.info("tfspark: streaming query %s trains the TF cluster", training.query.id)
        return training

    def _on_stream_attempt(self, step: Callable[[Attempt], T]) -> T:
        with self._stopped_on_interrupt():
            return self._on_current_attempt(step)

    def _end_stream(self, error: Optional[str]) -> None:
        """The streaming query ended: tell the nodes of the running attempt."""
        attempt = self._attempts[-1] if self._attempts else None
        if attempt is not None and attempt.failure is None:
            feeding.tell_stream_end(attempt, error)

    def _unrecoverable_failure(self) -> Optional[TFSparkError]:
        """The running attempt's failure when no restart can cure it (then the query stops)."""
        attempt = self._attempts[-1] if self._attempts else None
        failure = attempt.failure if attempt is not None else None
        if failure is None or may_restart(failure, len(self._attempts), self._config.max_restarts):
            return None
        return failure

    def inference(self, data: Any, feed_timeout: float = 600) -> Any:
        """Feed ``data`` to the nodes for inference; an RDD with one result per input row.

        Lazy like any RDD: partitions are sent when an action runs. Partition ``p`` goes whole to
        training node ``p % n``, whose ``main_fun`` answers its rows in order with
        ``feed.batch_results``; results keep the partition order of ``data``.
        """
        if self._backend.connect:
            raise TFSparkError("cluster.inference returns an RDD, and Spark Connect has no RDDs: "
                               "under Connect, score a DataFrame with the exported SavedModel "
                               "(see examples/mnist/mnist_inference.py)")
        timeout = self._check_feed(data, feed_timeout)
        if not self._config.feeds_in_stage:
            plan = self._on_current_attempt(
                lambda attempt: feeding.feed_plan(attempt, INFERENCE, timeout))
            return feeding.inference_results(plan, data)
        # in the stage: the answers are kept, so reading the RDD runs nothing again
        self._check_not_started()
        self._stage_input_of = lambda roles: feeding.stage_inference_input(data, roles, timeout)
        self._stage_data, stage_input = self._stage_input_of(self._roles)
        self._plan = dataclasses.replace(self._plan, stage_input=stage_input)
        with self._stopped_on_interrupt():
            self._start_attempt()
            answers = self._on_current_attempt(feeding.await_answers)
        return feeding.in_input_order(answers, data)

    def _check_not_started(self) -> None:
        if self._attempts or self._results is not None:
            raise preflight.PreflightError(
                "this TF cluster takes its data as its Spark stage's own input "
                "(feed_mode='stage', chosen when the application has no task slot beyond the "
                "TF nodes'), so it takes the data of one train() or inference() call, and has "
                "had it: pass every epoch to train() (num_epochs), start another cluster for "
                "inference, or run with feed_mode='job' (needs a spare task slot) to feed a "
                "cluster several times")

    def _check_feed(self, data: Any, feed_timeout: float) -> float:
        """Refuse a feed this cluster cannot take, before any Spark job."""
        if self._shut_down:
            raise preflight.PreflightError(
                "this TF cluster has been shut down (cluster.shutdown()), so its nodes take no "
                "more data: start a new cluster with TFCluster.run(...)")
        if self._config.input_mode != InputMode.SPARK:
            raise preflight.PreflightError("train()/inference() feed data to the nodes: start "
                                           "the cluster with input_mode=InputMode.SPARK")
        return feeding.check_data(self._backend, data, feed_timeout, len(self._roles),
                                  self._config.feeds_in_stage)

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
        NodeError : a node's ``main_fun`` raised, or a node failed and restarts ran out (the
            error lists every attempt's cause).
        TFSparkError : ``timeout`` passed, or the Spark job failed.
        """
        if self._results is not None:
            return self._results
        if self._stream is not None:
            self._stream.stop()  # the micro-batch in hand is trained first
        self._shut_down = True
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            with self._stopped_on_interrupt():
                if not self._attempts:  # feed_mode="stage", and train() never called
                    self._start_attempt()
                self._results = self._on_current_attempt(
                    lambda attempt: self._finish(attempt, deadline, timeout, grace_secs))
        except BaseException as e:
            self._end_tracking(e)
            raise
        self._end_tracking(None)
        return self._results

    def _finish(self, attempt: Attempt, deadline: Optional[float], timeout: Optional[float],
                grace_secs: float) -> List[Any]:
        if self._config.input_mode == InputMode.SPARK:
            feeding.tell_feeds_done(attempt)
        try:
            attempt.wait_for(attempt.training_done, deadline,
                             lambda: TFSparkError(f"TF training did not finish within "
                                                  f"timeout={timeout}s; the cluster was stopped"))
            with attempt.changed:
                attempt.stop_servers()
            attempt.wait_for(lambda: attempt.nodes_done(EVALUATOR),
                             time.monotonic() + grace_secs, None)
            with attempt.changed:
                attempt.stop_nodes(EVALUATOR, reason=f"training finished {grace_secs}s ago")
            attempt.wait_for_stage_end()
        finally:
            attempt.abort()
            self._progress.close()
            if self._tokens is not None:
                self._tokens.stop()
        return attempt.results()

def _tracking_options(option: Any) -> Optional[Dict[str, Any]]:
    """``run(mlflow=...)`` checked before any Spark job: MLflow importable, options known."""
    if option is None or option is False:
        return None
    try:
        from tfspark import tracking
    except ImportError as e:
        raise preflight.PreflightError(
            f"mlflow={option!r} needs MLflow on the driver: pip install 'tfspark[mlflow]' "
            f"({e})") from None
    try:
        return tracking.parse_option(option)
    except ValueError as e:
        raise preflight.PreflightError(str(e)) from None


#: Spark Connect clients whose executors were found unable to reach them (said once each).
_UNREACHABLE: Dict[Tuple[int, str], Optional[str]] = {}


def _auto_feeds_in_stage(backend: SparkBackend, conf: Dict[str, str], nodes: int,
                         detached: bool) -> bool:
    """``feed_mode="auto"``: whether the data becomes the nodes' own stage input, decided
    from what the application will have (see :func:`preflight.auto_feed_mode`) and logged."""
    if detached:
        mode, why = "stage", "the executors cannot reach this Spark Connect client"
    else:
        mode, why = preflight.auto_feed_mode(
            conf, backend.master, nodes,
            lambda: standalone.granted_cores(backend.master, conf.get("spark.app.id", ""), conf))
    logger.info("tfspark: feed_mode='auto' feeds %s: %s", "in the stage" if mode == "stage"
                else "with a Spark job per train()", why)
    return mode == "stage"


def _runs_node_jobs(backend: SparkBackend, conf: Dict[str, str], roles: List[Role],
                    detached: bool, in_stage: bool) -> bool:
    """Whether the TF cluster runs as one Spark job per node rather than one barrier stage:
    where its strategy trains on without a lost node (PSS workers), so that losing that node's
    executor does not fail the others' tasks (see :mod:`tfspark._driver.node_jobs`). Not for
    nodes that need the stage itself: detached ones (they meet through ``allGather``), or a
    stage whose input is the training data (``feed_mode="stage"``). Not where Spark could run
    a second copy of a node's one-task job (speculation with a duration threshold)."""
    speculates = (conf.get("spark.speculation", "false").lower() == "true"
                  and conf.get("spark.speculation.task.duration.threshold"))
    return (backend.runs_node_jobs and not detached and not in_stage and not speculates
            and any(for_roles(roles).survives_loss(r.job_name) for r in roles))


def _executors_cannot_reach(backend: SparkBackend, hosts: Tuple[str, str],
                            input_mode: InputMode, feed_mode: str = "job") -> bool:
    """Under Spark Connect the driver's end of the control channel runs in this client, which
    executors may not reach: then the nodes run *detached* -- rendezvous inside the stage,
    output, progress and errors returned with the stage's output -- and tfspark says so once."""
    key = (id(getattr(backend, "spark", backend)), hosts[1])
    if key not in _UNREACHABLE:
        reason = backend.unreachable(*hosts)
        _UNREACHABLE[key] = reason
        if reason is not None:
            notice = (f"tfspark: the executors cannot reach this Spark Connect client at "
                      f"{hosts[1]} ({reason}). TF clusters run detached: node output, progress "
                      "and errors arrive when each cluster's job ends, not live. Set "
                      f"{constants.CLIENT_HOST} to an address of this machine the executors "
                      "can reach to see them live.")
            print(notice, file=sys.stderr, flush=True)
            logger.info(notice)  # printed above: shown once, also with a root handler
    reason = _UNREACHABLE[key]
    if reason is not None and input_mode == InputMode.SPARK and feed_mode == "job":
        raise preflight.PreflightError(
            f"feed_mode='job' streams rows from a feeding Spark job to the TF nodes under the "
            f"driver's control, which needs the executors to reach this Spark Connect client, "
            f"and they cannot reach {hosts[1]} ({reason}). Use feed_mode='stage' (the data "
            "becomes the TF cluster's own stage input), or set "
            f"{constants.CLIENT_HOST} to an address of this machine the executors can reach.")
    return reason is not None


# ------------------------------------------------------------------------- the restart policy
def may_restart(failure: TFSparkError, attempts_run: int, max_restarts: int) -> bool:
    """Whether a failed attempt is followed by another: its cause is one a restart can cure
    (``restartable``: a node's process killed, its executor lost, a peer's death seen by TF;
    never ``main_fun`` raising or a bad setting) and fewer than ``max_restarts`` restarts ran
    (``attempts_run`` counts the failed attempt)."""
    return bool(getattr(failure, "restartable", False)) and attempts_run <= max_restarts


def final_error(failure: TFSparkError, causes: List[str]) -> TFSparkError:
    """What the user catches when restarts ran out after several attempts: the last failure's
    kind and details, listing every attempt's cause."""
    if isinstance(failure, NodeError):
        return NodeError(failure.role, failure.index, failure.host, failure.message,
                         failure.traceback_text, failure.output_tail,
                         restartable=failure.restartable, attempts=causes)
    return StageError(f"{failure}\n{attempts_text(causes)}",
                      bool(getattr(failure, "restartable", False)))


def _cause(failure: Optional[BaseException]) -> str:
    """One line saying why an attempt failed."""
    if failure is None:
        return ""
    return getattr(failure, "cause", None) or (str(failure).splitlines() or [""])[0]
