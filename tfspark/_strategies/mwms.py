"""MultiWorkerMirroredStrategy (and no strategy): every chief and worker runs ``main_fun`` on its
own share of the data and ends on its own; a lost node restarts the whole cluster (MWMS cannot
change its worker count in a running cluster).

The strategy itself is built in the node's process (TensorFlow is imported here)::

    strategy = ctx.multi_worker_mirrored_strategy()  # on every node of an MWMS cluster
"""
from __future__ import annotations

import json
import os
from typing import Any, Optional

from tfspark._strategies import tf_patches
from tfspark._strategies.base import StrategyBackend
from tfspark.errors import TFSparkError
from tfspark.roles import PS


class Mirrored(StrategyBackend):
    """MultiWorkerMirroredStrategy: the base answers."""

    name = "MultiWorkerMirroredStrategy"


MIRRORED = Mirrored()

_made_before_first_op: Optional[Any] = None


def multi_worker_mirrored_strategy(ctx: Any, **options: Any):
    """``tf.distribute.MultiWorkerMirroredStrategy`` for this node (reads ``TF_CONFIG``)."""
    import tensorflow as tf
    if PS in ctx.cluster_spec:
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
        tf_patches.set_class_attributes(
            extended, _std_server_started=True,
            _enable_check_health=made.extended._enable_check_health)


def _mirrored_worker_of_several() -> bool:
    """TF_CONFIG makes this process a chief or worker of 2+ MWMS workers (no ps)."""
    try:
        config = json.loads(os.environ.get("TF_CONFIG") or "{}")
        cluster, task = dict(config.get("cluster") or {}), dict(config.get("task") or {})
    except (ValueError, TypeError, AttributeError):
        return False
    workers = len(cluster.get("chief") or []) + len(cluster.get("worker") or [])
    return PS not in cluster and task.get("type") in ("chief", "worker") and workers > 1
