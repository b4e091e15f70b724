"""TensorFlowOnSpark's ``compat`` module: ``export_saved_model``, ``disable_auto_shard``,
``is_gpu_available``."""
from __future__ import annotations

from typing import Any

__all__ = ["export_saved_model", "disable_auto_shard", "is_gpu_available"]


def export_saved_model(model: Any, export_dir: str, is_chief: bool = False) -> None:
    """Save a Keras ``model`` as a SavedModel at ``export_dir`` itself (local or HDFS), as TFoS
    did. Under MultiWorkerMirroredStrategy every worker calls it (saving is collective); only
    the chief (``is_chief``) writes. For numbered versions, use
    :func:`tfspark.export.export_saved_model`."""
    from tfspark.export import save_saved_model
    save_saved_model(model, export_dir, chief=is_chief)


def disable_auto_shard(options: Any) -> None:
    """Turn off tf.data auto-sharding in ``options`` (a ``tf.data.Options``)."""
    import tensorflow as tf
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF


def is_gpu_available() -> bool:
    import tensorflow as tf
    return len(tf.config.list_logical_devices("GPU")) > 0
