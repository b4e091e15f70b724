"""ParameterServerStrategy: the chief coordinates (runs ``main_fun``, the only node that ends on its
own); parameter servers and workers only run TF servers. Workers get the data shares (fed rows
spilled as TFRecord files, staged TFRecord files) that the chief's ``dataset_fn`` reads on them.
A worker whose process dies restarts alone, in place: TF's ClusterCoordinator waits for it at
the same address and re-runs the steps it lost (``GRPC_FAIL_FAST=use_caller`` on every node).
A worker whose executor is lost for good does not stop the others: each node runs as its own
Spark job (not one barrier stage, where one lost task fails all), training goes on with the
workers left, and Spark's retry of the lost worker's task rejoins the training if it runs on the
same host (TF's coordinator knows each worker by its first address), Spark-fed rows sent to it
again first. A lost parameter server or
chief restarts the cluster from its backup.

The strategy itself is built on the chief (TensorFlow is imported here)::

    strategy = ctx.parameter_server_strategy()
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from tfspark._strategies.base import StrategyBackend
from tfspark.errors import TFSparkError
from tfspark.roles import CHIEF, PS, WORKER

#: Where workers keep their share of the data: staged TFRecord files (``stage_files``) and
#: Spark-fed rows. Relative on purpose: each ps/worker process runs in its own folder, so the
#: one pattern the chief's ``dataset_fn`` holds names, on every worker, that worker's own files
#: -- also when several workers share a host.
STAGED_DIR = "tfspark-staged"
FEED_DIR = "tfspark-feed"


class ParameterServer(StrategyBackend):
    name = "ParameterServerStrategy"
    finishers = (CHIEF,)
    data_roles = (WORKER,)
    serving_spill_format = "tfrecord"
    stages_files = True

    def keras3_problem(self) -> Tuple[bool, str]:
        return True, ("env sets TF_USE_LEGACY_KERAS to off (Keras 3), but Keras 3 does not "
                      "support ParameterServerStrategy (num_ps > 0). Leave TF_USE_LEGACY_KERAS "
                      "unset so tfspark uses tf-keras.")

    def serves_only(self, job_name: str) -> bool:
        return job_name in (PS, WORKER)

    def restarts_in_place(self, job_name: str) -> bool:
        return job_name == WORKER

    def survives_loss(self, job_name: str) -> bool:
        return job_name == WORKER  # TF's ClusterCoordinator re-runs its steps on the others

    def node_env(self) -> Dict[str, str]:
        return {"GRPC_FAIL_FAST": "use_caller"}  # the coordinator retries a lost worker's steps


PARAMETER_SERVER = ParameterServer()


def parameter_server_strategy(ctx: Any, variable_partitioner: Optional[Any] = None):
    """``tf.distribute.ParameterServerStrategy`` coordinating this cluster, on the chief.

    ``variable_partitioner`` (e.g. ``tf.distribute.experimental.partitioners.
    MinSizePartitioner(min_shard_bytes=256 << 10, max_shards=num_ps)``) splits large variables
    over the parameter servers. The ps and worker nodes already run their TF servers (tfspark
    starts them); ``GRPC_FAIL_FAST=use_caller`` is set on every node so the coordinator can
    retry a failed worker's steps.
    """
    import tensorflow as tf
    if PS not in ctx.cluster_spec or ctx.job_name != CHIEF:
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
    if ctx.job_name != WORKER or not ctx.stage_files:
        return
    from tfspark.data import stage_shard
    for name, path in ctx.stage_files.items():
        stage_shard(path, ctx.shard_index, ctx.num_shards, f"{STAGED_DIR}/{name}")


def serve(ctx: Any) -> None:
    """Run this ps or worker node's TF server until the process is stopped."""
    import tensorflow as tf
    server = tf.distribute.Server(tf.train.ClusterSpec(ctx.cluster_spec), job_name=ctx.job_name,
                                  task_index=ctx.task_index, protocol="grpc", start=True)
    print(f"tfspark: {ctx.job_name}:{ctx.task_index} serving at {server.target}", flush=True)
    server.join()
    raise TFSparkError(f"the TF server of {ctx.job_name}:{ctx.task_index} ended unexpectedly")
