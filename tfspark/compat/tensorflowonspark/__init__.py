"""TensorFlowOnSpark (TFoS) 2.x programs on tfspark, changed only in their import line::

    from tensorflowonspark import TFCluster, TFNode              # before
    from tfspark.compat.tensorflowonspark import TFCluster, TFNode   # after

The modules ``TFCluster``, ``TFNode``, ``TFParallel``, ``dfutil``, ``pipeline`` and ``compat`` keep
TFoS's names, signatures and the behaviours programs rely on, and map every name onto tfspark's own
API (:mod:`tfspark._driver.cluster`, :mod:`tfspark._feed.datafeed`, :mod:`tfspark.tfrecord`,
:mod:`tfspark.ml`, :mod:`tfspark.export`): there is no second implementation. What TFoS had and
tfspark does not keep (TF1 graph mode, ``ctx.mgr``'s raw queues, ``driver_ps_nodes``, RDMA, Spark
Streaming feeds) raises :class:`NotKeptError`, which says what to use instead.

Import the modules you use, as with TFoS (``from tfspark.compat.tensorflowonspark import
dfutil``); importing the package itself loads none of them.

Keras: TFoS programs are tf-keras programs (``Adam(lr=...)``, ``Sequential`` built on the
driver and shipped in ``map_fun``), and tfspark's nodes run tf-keras. So importing this package
sets ``TF_USE_LEGACY_KERAS=1`` in this process too, unless it is set already: TensorFlow,
imported before or after, then gives ``tf.keras`` as tf-keras here as on the nodes. If Keras 3
was loaded already, that cannot change any more, and a warning says so.
"""
import os
import sys
import warnings

from tfspark.compat.tensorflowonspark._errors import NotKeptError

__all__ = ["NotKeptError"]


def _use_tf_keras() -> None:
    """Make ``tf.keras`` on the driver the tf-keras the nodes run, or say why it is not."""
    if "TF_USE_LEGACY_KERAS" in os.environ:
        return  # the user's choice
    if "keras.src" in sys.modules and "tf_keras" not in sys.modules:
        warnings.warn(
            "tfspark.compat.tensorflowonspark was imported after Keras 3 was loaded (by "
            "tensorflow.keras or keras): Keras objects made in this driver are Keras 3, while "
            "the TF nodes run tf-keras (TF_USE_LEGACY_KERAS=1), so a model, layer or optimizer "
            "made here fails on the nodes. Import tfspark.compat.tensorflowonspark before "
            "TensorFlow, or set TF_USE_LEGACY_KERAS=1 before starting Python.",
            stacklevel=3)
        return
    os.environ["TF_USE_LEGACY_KERAS"] = "1"


_use_tf_keras()
