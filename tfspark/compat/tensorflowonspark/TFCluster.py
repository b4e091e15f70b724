"""TensorFlowOnSpark's ``TFCluster`` module on tfspark: ``run``, ``InputMode`` and the cluster's
``train``/``inference``/``shutdown``, over :class:`tfspark._driver.cluster.TFCluster`.

What differs from TFoS: the TF nodes run as one Spark barrier stage; with as many task slots as
nodes (TFoS's standard set-up: ``cluster_size`` executors x 1 core) the cluster starts at the
first ``train()``/``inference()`` with that call's data as its stage's own input, so one such
call per cluster (see ``feed_mode`` in :meth:`tfspark._driver.cluster.TFCluster.run`).
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Optional

from tfspark._driver.cluster import TFCluster as _Cluster
from tfspark.compat.tensorflowonspark._errors import NotKeptError
from tfspark.compat.tensorflowonspark.TFNode import run_tfos_function
from tfspark.roles import InputMode

__all__ = ["InputMode", "TFCluster", "run"]

#: TFoS's ``train(num_epochs=0)``: "unspecified", which TFoS fed as 10 epochs.
DEFAULT_EPOCHS = 10

_TFOS_QUEUES = ("input", "output", "error")


class TFCluster:
    """A running TF cluster, as TFoS's ``TFCluster.run`` returned it."""

    def __init__(self, cluster: _Cluster, sc: Any, num_executors: int, input_mode: int):
        self.cluster = cluster  # tfspark's own
        self.sc, self.num_executors, self.input_mode = sc, num_executors, input_mode

    def train(self, dataRDD: Any, num_epochs: int = 0, feed_timeout: float = 600,
              qname: str = "input") -> None:
        """Feed ``dataRDD`` (an RDD or DataFrame) to the nodes for ``num_epochs`` passes
        (0: TFoS's default of 10)."""
        _check_queue(qname)
        if type(dataRDD).__name__ == "DStream":
            raise NotKeptError("Spark Streaming (DStream) feeding",
                               "feed each micro-batch's RDD with cluster.train(rdd) from "
                               "dstream.foreachRDD, or read the stream in TF")
        self.cluster.train(dataRDD, num_epochs=num_epochs or DEFAULT_EPOCHS,
                           feed_timeout=feed_timeout)

    def inference(self, dataRDD: Any, feed_timeout: float = 600, qname: str = "input") -> Any:
        """An RDD with the nodes' ``batch_results`` for each row of ``dataRDD``, in order."""
        _check_queue(qname)
        return self.cluster.inference(dataRDD, feed_timeout=feed_timeout)

    def shutdown(self, ssc: Any = None, grace_secs: float = 0, timeout: float = 259200) -> None:
        """Wait for the nodes to finish (``timeout`` seconds, ``-1``: no limit), give the
        evaluator ``grace_secs``, and raise if any node failed."""
        if ssc is not None:
            raise NotKeptError("shutdown(ssc=...) for Spark Streaming",
                               "stop the StreamingContext yourself, then call shutdown()")
        self.cluster.shutdown(timeout=None if timeout is None or timeout < 0 else timeout,
                              grace_secs=grace_secs)

    def tensorboard_url(self) -> Optional[str]:
        return self.cluster.tensorboard_url


def run(sc: Any, map_fun: Callable[[Any, Any], Any], tf_args: Any, num_executors: int,
        num_ps: int = 0, tensorboard: bool = False, input_mode: int = InputMode.TENSORFLOW,
        log_dir: Optional[str] = None, driver_ps_nodes: bool = False,
        master_node: Optional[str] = None, reservation_timeout: float = 600,
        queues: Any = None, eval_node: bool = False, release_port: bool = True) -> TFCluster:
    """TFoS's ``TFCluster.run``: ``map_fun(tf_args, ctx)`` on ``num_executors`` TF nodes, with
    TFoS's ``ctx`` (:class:`~tfspark.compat.tensorflowonspark.TFNode.TFNodeContext`).
    tfspark holds each node's port until TF binds it; with ``release_port=False`` ``map_fun``
    also gets that hold as ``ctx.tmp_socket`` and calls ``ctx.release_port()`` to close it."""
    if driver_ps_nodes:
        raise NotKeptError("driver_ps_nodes", "every TF node, parameter servers too, runs as a "
                           "task of the cluster's barrier stage: give the application a task "
                           "slot per node (num_executors includes num_ps)")
    if queues is not None and tuple(queues) != _TFOS_QUEUES:
        raise NotKeptError("custom feed queues", "a node has one training feed and one "
                           "inference feed (DataFeed(ctx.mgr))")
    node_fun = functools.partial(run_tfos_function, map_fun, release_port=bool(release_port))
    cluster = _Cluster.run(sc, node_fun, tf_args, num_executors, num_ps=num_ps,
                           tensorboard=tensorboard,
                           input_mode=InputMode(input_mode), log_dir=log_dir,
                           master_node=master_node, eval_node=eval_node,
                           reservation_timeout=reservation_timeout)
    return TFCluster(cluster, sc, num_executors, InputMode(input_mode))


def _check_queue(qname: str) -> None:
    if qname != "input":
        raise NotKeptError(f"feeding queue {qname!r}", "train()/inference() feed the nodes' one "
                           "input; leave qname out")
