"""TensorFlowOnSpark (TFoS) 2.x programs on tfspark, changed only in their import line::

    from tensorflowonspark import TFCluster, TFNode              # before
    from tfspark.compat.tensorflowonspark import TFCluster, TFNode   # after

The modules ``TFCluster``, ``TFNode``, ``TFParallel``, ``dfutil``, ``pipeline`` and ``compat`` keep
TFoS's names, signatures and the behaviours programs rely on, and map every name onto tfspark's
own API (:mod:`tfspark.cluster`, :mod:`tfspark.feed`, :mod:`tfspark.tfrecord`, :mod:`tfspark.ml`,
:mod:`tfspark.export`): there is no second implementation. What TFoS had and tfspark does not
keep (TF1 graph mode, ``ctx.mgr``'s raw queues, ``driver_ps_nodes``, RDMA, Spark Streaming feeds)
raises :class:`NotKeptError`, which says what to use instead.

Import the modules you use, as with TFoS (``from tfspark.compat.tensorflowonspark import
dfutil``); importing the package itself loads none of them.
"""
from ._errors import NotKeptError

__all__ = ["NotKeptError"]
