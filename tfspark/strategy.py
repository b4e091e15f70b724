"""Build TF's distribution strategies from a node's ``ctx``, with the settings TF's guides ask for.

Used inside ``main_fun`` (TensorFlow is imported here, in the node's own process)::

    strategy = ctx.parameter_server_strategy()      # on the chief (the coordinator)
    strategy = ctx.multi_worker_mirrored_strategy()  # on every node of an MWMS cluster
"""
from __future__ import annotations

from typing import Any, Optional

from . import constants
from .errors import TFSparkError


def multi_worker_mirrored_strategy(ctx: Any, **options: Any):
    """``tf.distribute.MultiWorkerMirroredStrategy`` for this node (reads ``TF_CONFIG``)."""
    import tensorflow as tf
    if "ps" in ctx.cluster_spec:
        raise TFSparkError("this cluster has parameter servers: use "
                           "ctx.parameter_server_strategy() on the chief")
    return tf.distribute.MultiWorkerMirroredStrategy(**options)


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
    from .data import stage_shard
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
