"""Build TF's distribution strategies from a node's ``ctx``, with the settings TF's guides ask for.

Used inside ``main_fun`` (TensorFlow is imported here, in the node's own process)::

    strategy = ctx.parameter_server_strategy()      # on the chief (the coordinator)
    strategy = ctx.multi_worker_mirrored_strategy()  # on every node of an MWMS cluster
"""
from __future__ import annotations

import json
import os
from typing import Any, Optional

from tfspark import constants
from tfspark.errors import TFSparkError

_made_before_first_op: Optional[Any] = None


def multi_worker_mirrored_strategy(ctx: Any, **options: Any):
    """``tf.distribute.MultiWorkerMirroredStrategy`` for this node (reads ``TF_CONFIG``)."""
    import tensorflow as tf
    if "ps" in ctx.cluster_spec:
        raise TFSparkError("this cluster has parameter servers: use "
                           "ctx.parameter_server_strategy() on the chief")
    if _made_before_first_op is not None and not options:
        return _made_before_first_op
    return tf.distribute.MultiWorkerMirroredStrategy(**options)


def before_first_tf_op() -> None:
    """Called by tfspark's dataset builders before they run TF ops in a node.

    TF sets up MultiWorkerMirroredStrategy's collective ops only before the process's first TF
    op ("Collective ops must be configured at program startup"), so a ``main_fun`` that builds
    its dataset (``feed.dataset``, ``tfrecord_dataset``) before its strategy would fail. On a
    chief or worker of a multi-worker cluster without parameter servers, where nothing has run
    a TF op yet, this creates the strategy first (TF's defaults); the ``main_fun``'s own
    ``MultiWorkerMirroredStrategy()``, created after, uses the collective ops it set up.
    """
    global _made_before_first_op
    if _made_before_first_op is not None or not _mirrored_worker_of_several():
        return
    import tensorflow as tf
    from tensorflow.python.eager import context
    if getattr(context.context(), "_context_handle", "unknown") is not None:
        return  # a TF op has run: TF's own rule applies
    made = tf.distribute.MultiWorkerMirroredStrategy()
    _made_before_first_op = made
    extended = type(made.extended)
    if getattr(made.extended, "_std_server_started", False):
        # Strategies created after this one must not start the collective ops' server again:
        # TF would restart it under a peer that is already using it (a hang until the
        # coordination service's heartbeat timeout). TF tracks "started" per strategy object;
        # in one process it is started once, so mark it on the class, with the health-check
        # setting TF chose alongside it.
        extended._std_server_started = True
        extended._enable_check_health = made.extended._enable_check_health


def _mirrored_worker_of_several() -> bool:
    """TF_CONFIG makes this process a chief or worker of 2+ MWMS workers (no ps)."""
    try:
        config = json.loads(os.environ.get("TF_CONFIG") or "{}")
        cluster, task = dict(config.get("cluster") or {}), dict(config.get("task") or {})
    except (ValueError, TypeError, AttributeError):
        return False
    workers = len(cluster.get("chief") or []) + len(cluster.get("worker") or [])
    return "ps" not in cluster and task.get("type") in ("chief", "worker") and workers > 1


def parameter_server_strategy(ctx: Any, variable_partitioner: Optional[Any] = None):
    """``tf.distribute.ParameterServerStrategy`` coordinating this cluster, on the chief.

    ``variable_partitioner`` (e.g. ``tf.distribute.experimental.partitioners.
    MinSizePartitioner(min_shard_bytes=256 << 10, max_shards=num_ps)``) splits large variables
    over the parameter servers. The ps and worker nodes already run their TF servers (tfspark
    starts them); ``GRPC_FAIL_FAST=use_caller`` is set on every node so the coordinator can
    retry a failed worker's steps.
    """
    import tensorflow as tf
    if "ps" not in ctx.cluster_spec or ctx.job_name != "chief":
        raise TFSparkError(
            f"parameter_server_strategy() runs on the chief of a cluster with parameter servers "
            f"(TFCluster.run(..., num_ps>0, master_node='chief')); this is {ctx.job_name}:"
            f"{ctx.task_index} in a cluster of {sorted(ctx.cluster_spec)}")
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    return tf.distribute.ParameterServerStrategy(resolver,
                                                 variable_partitioner=variable_partitioner)


def stage_files(ctx: Any) -> None:
    """On a PSS worker, copy its shard of each ``stage_files`` entry to ``ctx.staged_files``
    (relative to the worker process's own folder)."""
    if ctx.job_name != "worker" or not ctx.stage_files:
        return
    from tfspark.data import stage_shard
    for name, path in ctx.stage_files.items():
        stage_shard(path, ctx.shard_index, ctx.num_shards, f"{constants.PSS_STAGED_DIR}/{name}")


def serve(ctx: Any) -> None:
    """Run this ps or worker node's TF server until the process is stopped."""
    import tensorflow as tf
    server = tf.distribute.Server(tf.train.ClusterSpec(ctx.cluster_spec), job_name=ctx.job_name,
                                  task_index=ctx.task_index, protocol="grpc", start=True)
    print(f"tfspark: {ctx.job_name}:{ctx.task_index} serving at {server.target}", flush=True)
    server.join()
    raise TFSparkError(f"the TF server of {ctx.job_name}:{ctx.task_index} ended unexpectedly")
