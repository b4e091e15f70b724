"""TensorFlowOnSpark's ``TFParallel.run``: independent single-node TF instances, one per task.

Runs on tfspark's launcher (one barrier stage, each node's own process, output and errors
back on the driver) with ``TF_CONFIG`` removed before ``map_fn`` runs, so each instance is a
single-node TF, as in TFoS.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

__all__ = ["run"]


def run(sc: Any, map_fn: Callable[[Any, Any], Any], tf_args: Any, num_executors: int,
        use_barrier: bool = True) -> None:
    """``map_fn(tf_args, ctx)`` on ``num_executors`` tasks at once; returns when all are done
    (raising if one failed). ``ctx`` has TFoS's ``worker_num``/``executor_id``,
    ``num_workers``, ``defaultFS`` and ``working_dir``. ``use_barrier=False`` changes nothing:
    the tasks always start together."""
    from tfspark._driver.cluster import TFCluster
    TFCluster.run(sc, functools.partial(_single_node, map_fn), tf_args, num_executors,
                  progress=False).shutdown()


def _single_node(map_fn: Callable[[Any, Any], Any], args: Any, ctx: Any) -> None:
    import os

    from tfspark.compat.tensorflowonspark.TFNode import TFNodeContext
    os.environ.pop("TF_CONFIG", None)  # before the user's code imports TensorFlow
    map_fn(args, TFNodeContext(ctx))
