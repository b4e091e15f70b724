"""``ctx``: what a TF node's ``main_fun(args, ctx)`` knows about its place in the cluster.

Built by the node's Spark task and handed to the node's process; plain data only, so it pickles.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from tfspark.errors import TFSparkError
from tfspark._strategies.base import for_job_names
from tfspark.roles import Role, is_chief


@dataclass
class NodeContext:
    """A TF node's view of the cluster.

    Attributes
    ----------
    job_name : "chief", "worker", "ps" or "evaluator".
    task_index : index of this node within its ``job_name``.
    worker_num : global index of this node (its Spark partition), unique over the cluster.
    num_workers : number of nodes that train (chief + workers).
    shard_index, num_shards : this node's share of the training data, of ``num_shards``: under
        MultiWorkerMirroredStrategy the chief and workers each take one; under
        ParameterServerStrategy the workers do. ``shard_index`` is None on other nodes.
    cluster_spec : the TF cluster spec, ``{"worker": ["host:port", ...], ...}`` (no evaluator).
    tf_config : the JSON string that is set in ``TF_CONFIG``.
    executor_id : the Spark executor this node runs in (its host under
        ParameterServerStrategy, whose nodes run as jobs of their own and are not told it).
    host, port : this node's TF server address (the port was reserved for it).
    default_fs : the cluster's default filesystem (``fs.defaultFS``), e.g. ``hdfs://nn:8020``.
    working_dir : the driver's working directory; relative local paths resolve against it.
    log_dir : TensorBoard log directory (absolute), if one was given to ``TFCluster.run``.
    input_mode, feed_port : where Spark-fed data arrives (``InputMode.SPARK``).
    stage_files : TFRecord files staged on ParameterServerStrategy workers.
    attempt : which run of the TF cluster this is: 0 first, 1 after the first restart, ...
    gpus : the GPU addresses Spark assigned to this node's task (``TaskContext.resources()``);
        the node's process sees exactly these (``CUDA_VISIBLE_DEVICES``). Empty without a GPU
        resource.
    full_num_workers : ``num_workers`` of the full cluster: more than ``num_workers`` while it
        runs on fewer after losing executors (``TFCluster.run(min_workers=...)``).
    batch_policy : how batches follow a smaller cluster (see :meth:`per_worker_batch`).
    awaits_feeds : a ParameterServerStrategy worker rejoining the training after its executor
        was lost: the feeds it is sent again, which it holds before its TF server starts.
    """

    job_name: str
    task_index: int
    worker_num: int
    num_workers: int
    cluster_spec: Dict[str, List[str]]
    tf_config: str
    executor_id: str
    host: str
    port: int
    default_fs: str = "file:///"
    working_dir: str = field(default_factory=os.getcwd)
    log_dir: Optional[str] = None
    user: Optional[str] = None
    input_mode: int = 0  # InputMode.TENSORFLOW
    feed_port: Optional[int] = None  # where this node receives Spark-fed data (InputMode.SPARK)
    shard_index: Optional[int] = None  # see StrategyBackend.data_index
    num_shards: int = 0
    secret: bytes = field(default=b"", repr=False)
    stage_files: Dict[str, str] = field(default_factory=dict)  # name -> TFRecord dir/glob
    attempt: int = 0
    gpus: Tuple[str, ...] = ()
    full_num_workers: int = 0  # 0: num_workers
    batch_policy: str = "global"
    awaits_feeds: Tuple[int, ...] = ()  # a rejoining PSS worker: feeds sent again, before it serves

    def per_worker_batch(self, batch_size: int) -> int:
        """The per-worker batch to use for ``batch_size``, the full cluster's per-worker batch.

        On the full cluster it is ``batch_size``. On fewer workers (after executors were lost
        for good, ``TFCluster.run(min_workers=...)``), with ``batch_policy="global"`` (default)
        it grows so that the global batch stays ``batch_size x full_num_workers`` (rounded up);
        with ``batch_policy="per_worker"`` it stays ``batch_size`` and the global batch
        shrinks (scale the learning rate with :meth:`scaled_learning_rate`). tfspark's own
        datasets (``feed.dataset``, ``tfrecord_dataset(batch_size=...)``) apply it."""
        full = self.full_num_workers or self.num_workers
        if self.batch_policy == "global" and full > self.num_workers:
            return -(-batch_size * full // self.num_workers)
        return batch_size

    def scaled_learning_rate(self, learning_rate: float) -> float:
        """``learning_rate`` for this cluster's global batch: as given, except on fewer workers
        under ``batch_policy="per_worker"``, where it is scaled with the global batch (the
        linear scaling rule: ``learning_rate x num_workers / full_num_workers``)."""
        full = self.full_num_workers or self.num_workers
        if self.batch_policy == "per_worker" and full > self.num_workers:
            return learning_rate * self.num_workers / full
        return learning_rate

    @property
    def is_chief(self) -> bool:
        """True on the node that writes checkpoints and exports: the chief, else worker 0."""
        return is_chief(self._role, self.cluster_spec)

    @property
    def task(self) -> Dict[str, object]:
        return json.loads(self.tf_config)["task"]

    @property
    def runs_server_only(self) -> bool:
        """True for ps and worker nodes of a ParameterServerStrategy cluster: tfspark runs
        their TF server; ``main_fun`` runs on the chief (coordinator) and evaluator."""
        return for_job_names(self.cluster_spec).serves_only(self.job_name)

    @property
    def _role(self) -> Role:
        return Role(self.job_name, self.task_index, self.worker_num)

    def multi_worker_mirrored_strategy(self, **options):
        """See :func:`tfspark._strategies.mwms.multi_worker_mirrored_strategy`."""
        from tfspark._strategies.mwms import multi_worker_mirrored_strategy
        return multi_worker_mirrored_strategy(self, **options)

    def parameter_server_strategy(self, variable_partitioner=None):
        """See :func:`tfspark._strategies.pss.parameter_server_strategy`."""
        from tfspark._strategies.pss import parameter_server_strategy
        return parameter_server_strategy(self, variable_partitioner)

    def backup_and_restore(self, path: str, save_freq="epoch", delete_checkpoint: bool = True):
        """A Keras ``BackupAndRestore`` callback whose backup lives at ``path`` (HDFS or a
        shared path): ``model.fit`` resumes from the last backup after a failure or on a rerun.
        See :func:`tfspark.backup.backup_and_restore`."""
        from tfspark.backup import backup_and_restore
        return backup_and_restore(path, self, save_freq, delete_checkpoint)

    def staged_files(self, name: str) -> str:
        """Glob pattern of the files staged as ``name`` (``TFCluster.run(stage_files=...)``).

        The same relative pattern on every node; each worker's process runs in its own folder,
        so a ParameterServerStrategy ``dataset_fn`` traced on the chief reads, on each worker,
        that worker's own shard::

            tf.data.TFRecordDataset(tf.data.Dataset.list_files(ctx.staged_files("train")))
        """
        if name not in self.stage_files:
            raise TFSparkError(f"no files were staged as {name!r}; staged: "
                               f"{sorted(self.stage_files)} (TFCluster.run(stage_files=...))")
        from tfspark._strategies.pss import STAGED_DIR
        return f"{STAGED_DIR}/{name}/*"

    def get_data_feed(self, train_mode: Optional[bool] = True, *, shuffle: bool = True,
                      seed: Optional[int] = None):
        """This node's :class:`~tfspark._feed.datafeed.DataFeed` (``InputMode.SPARK``, chief/workers).

        ``train_mode=False`` for inference: rows taken with ``next_batch`` must be answered, in
        order, with ``batch_results``; ``None``: training or inference, whichever data the
        driver sends first (``cluster.train`` or ``cluster.inference``). ``shuffle``/``seed``: training visits this node's rows in
        a fresh random order every epoch (reproducible from ``seed``); ``shuffle=False`` keeps
        the fed order. ``feed.dataset()`` can override both.
        """
        from tfspark._feed.datafeed import get_data_feed
        return get_data_feed(train_mode, shuffle, seed)

    def micro_batches(self, model: Any, backup_dir: str, *, export_dir: Optional[str] = None,
                      export_every_batches: Optional[int] = None,
                      export_every_secs: Optional[float] = None,
                      timeout: Optional[float] = None):
        """The micro-batches of the streaming query ``cluster.train_stream`` runs, each trained
        exactly once (see :mod:`tfspark._feed.micro_batches`)::

            for batch in ctx.micro_batches(model, args.backup_dir, export_dir=args.export_dir):
                model.fit(batch.dataset(64, label="label"), epochs=1)

        Parameters
        ----------
        model : the model being trained (a tf.keras model, or a ``tf.Module``); it and its
            optimizer are restored from ``backup_dir`` before the first micro-batch, and saved
            there with the id of each micro-batch once its loop body has run.
        backup_dir : where the backup lives (HDFS, or a path every node shares); keep it for
            as long as the query's ``checkpoint_location``: the two together make a restarted
            query skip the micro-batches already trained and train the rest.
        export_dir : publish SavedModel versions here (:func:`tfspark.export.export_saved_model`)
            every ``export_every_batches`` micro-batches (1 if neither is given) or every
            ``export_every_secs`` seconds, after the micro-batch's backup.
        timeout : seconds to wait for the next micro-batch before raising (``None``: as long
            as the query runs).

        The loop ends when the query stops (``query.stop()``, ``cluster.shutdown()``, a
        ``Trigger.AvailableNow`` query that has read everything); if the query failed, with a
        ``TFSparkError`` carrying its error.
        """
        from tfspark._feed.datafeed import current_feed
        from tfspark._feed.micro_batches import MicroBatches
        from tfspark._node.fit_progress import report
        return MicroBatches(self, current_feed(), model, backup_dir, export_dir=export_dir,
                            export_every_batches=export_every_batches,
                            export_every_secs=export_every_secs, timeout=timeout, report=report)

    def absolute_path(self, path: str) -> str:
        """Resolve ``path`` for use on this node.

        tfspark's one path rule (:func:`tfspark.fs.resolve`): a URL with a host is returned
        unchanged; ``hdfs:///path`` gets the default filesystem's NameNode; a relative path
        resolves against the default filesystem -- for ``hdfs://nn:port`` the user's HDFS home
        (``hdfs://nn:port/user/<user>/path``), for a local default FS the driver's working
        directory; an absolute path gets the default filesystem's scheme and authority.
        """
        return resolve_path(path, self.default_fs, self.working_dir, self.user)


def resolve_path(path: str, default_fs: str, working_dir: str, user: Optional[str] = None) -> str:
    """See :meth:`NodeContext.absolute_path`; local results are plain paths, usable by TF and os."""
    from tfspark.fs import absolute
    return absolute(path, default_fs, working_dir, user)
