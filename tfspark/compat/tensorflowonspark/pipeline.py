"""TensorFlowOnSpark's ``pipeline``: ``TFEstimator``/``TFModel`` with TFoS's params, over
:mod:`tfspark.ml` (training: :func:`tfspark.ml.fit_on_cluster`; scoring:
:func:`tfspark.predict`).

As in TFoS: ``fit(df)`` feeds the columns of ``input_mapping`` (``{column: tensor}``) in sorted
order to ``train_fn(args, ctx)``, whose ``args`` are the user's ``tf_args`` merged with the
params (``args.batch_size``, ``args.export_dir``, ...), and returns a ``TFModel`` with the same
params; the model exports itself from ``train_fn`` (``compat.export_saved_model``).
``TFModel.transform(df)`` scores the SavedModel at ``export_dir`` with the ``input_mapping``
columns and returns a DataFrame of the ``output_mapping`` columns (``{tensor: column}``), in
sorted tensor order; flat arrays are reshaped to the signature's input shape.
"""
from __future__ import annotations

import argparse
import copy
import functools
from typing import Any, Callable, Dict, Optional

from pyspark.ml import Estimator, Model
from pyspark.ml.param import Param, Params, TypeConverters

from tfspark.compat.tensorflowonspark._errors import NotKeptError
from tfspark.compat.tensorflowonspark.TFNode import run_tfos_function
from tfspark.roles import InputMode

__all__ = ["Namespace", "TFParams", "TFTypeConverters", "TFEstimator", "TFModel"]


class TFTypeConverters:
    """Param type converters TFoS added to Spark's."""

    @staticmethod
    def toDict(value: Any) -> Dict[Any, Any]:  # noqa: N802 - TFoS's name
        if isinstance(value, dict):
            return value
        raise TypeError(f"Could not convert {value} to dict")


class Namespace:
    """``argparse.Namespace``-like args from a dict, a Namespace, or an argv list (kept as
    ``argv`` and iterated)."""

    argv = None

    def __init__(self, d: Any):
        if isinstance(d, list):
            self.argv = d
        elif isinstance(d, dict):
            self.__dict__.update(d)
        elif isinstance(d, (argparse.Namespace, Namespace)):
            self.__dict__.update(vars(d))
        else:
            raise TypeError(f"Unsupported Namespace args: {d}")

    def __iter__(self):
        return iter(self.argv) if self.argv else iter(list(self.__dict__))

    def __repr__(self) -> str:
        if self.argv:
            return f"{self.argv}"
        items = ", ".join(f"{k}={self.__dict__[k]!r}" for k in sorted(self.__dict__))
        return f"{type(self).__name__}({items})"

    def __eq__(self, other: Any) -> bool:
        if self.argv:
            return self.argv == other
        return isinstance(other, Namespace) and self.__dict__ == other.__dict__


class TFParams(Params):
    """Holds the user's ``args``; ``merge_args_params`` overlays the params' values on them."""

    args: Any = None

    def merge_args_params(self) -> Any:
        merged = copy.copy(self.args)
        for param in self.params:
            vars(merged)[param.name] = self.getOrDefault(param)
        return merged


def _int(value: Any) -> int:
    """Spark's int converter, also taking ``InputMode`` members (an ``IntEnum``)."""
    return TypeConverters.toInt(int(value) if isinstance(value, InputMode) else value)


def _has(name: str, suffix: str, doc: str, converter: Callable) -> type:
    """TFoS's ``Has<suffix>`` mix-in: a Param ``name`` with ``set<suffix>``/``get<suffix>``."""
    def setter(self, value):
        return self._set(**{name: value})

    def getter(self):
        return self.getOrDefault(name)

    return type(f"Has{suffix}", (Params,), {
        name: Param(Params._dummy(), name, doc, typeConverter=converter),
        f"set{suffix}": setter, f"get{suffix}": getter})


HasBatchSize = _has("batch_size", "BatchSize", "records per batch", TypeConverters.toInt)
HasClusterSize = _has("cluster_size", "ClusterSize", "nodes in the cluster", TypeConverters.toInt)
HasEpochs = _has("epochs", "Epochs", "epochs to train", TypeConverters.toInt)
HasGraceSecs = _has("grace_secs", "GraceSecs", "seconds to wait after training",
                    TypeConverters.toInt)
HasInputMapping = _has("input_mapping", "InputMapping", "{DataFrame column: input tensor}",
                       TFTypeConverters.toDict)
HasInputMode = _has("input_mode", "InputMode", "0=TENSORFLOW, 1=SPARK", _int)
HasMasterNode = _has("master_node", "MasterNode", "job name of the chief",
                     TypeConverters.toString)
HasModelDir = _has("model_dir", "ModelDir", "checkpoint directory", TypeConverters.toString)
HasOutputMapping = _has("output_mapping", "OutputMapping", "{output tensor: DataFrame column}",
                        TFTypeConverters.toDict)
HasProtocol = _has("protocol", "Protocol", "TF network protocol (grpc)", TypeConverters.toString)
HasReaders = _has("readers", "Readers", "reader threads (TF1)", TypeConverters.toInt)
HasSteps = _has("steps", "Steps", "maximum steps to train", TypeConverters.toInt)
HasTensorboard = _has("tensorboard", "Tensorboard", "serve TensorBoard",
                      TypeConverters.toBoolean)
HasTFRecordDir = _has("tfrecord_dir", "TFRecordDir", "TFRecord staging directory (TF1)",
                      TypeConverters.toString)
HasExportDir = _has("export_dir", "ExportDir", "SavedModel directory", TypeConverters.toString)
HasSignatureDefKey = _has("signature_def_key", "SignatureDefKey", "SavedModel signature",
                          TypeConverters.toString)
HasTagSet = _has("tag_set", "TagSet", "SavedModel tags, comma-separated",
                 TypeConverters.toString)


class HasNumPS(_has("num_ps", "NumPS", "parameter servers", TypeConverters.toInt)):
    driver_ps_nodes = Param(Params._dummy(), "driver_ps_nodes", "run ps nodes on the driver",
                            typeConverter=TypeConverters.toBoolean)

    def setDriverPSNodes(self, value: bool):  # noqa: N802 - TFoS's name
        return self._set(driver_ps_nodes=value)

    def getDriverPSNodes(self) -> bool:  # noqa: N802 - TFoS's name
        return self.getOrDefault(self.driver_ps_nodes)


class TFEstimator(Estimator, TFParams, HasInputMapping, HasClusterSize, HasNumPS, HasInputMode,
                  HasMasterNode, HasProtocol, HasGraceSecs, HasTensorboard, HasModelDir,
                  HasExportDir, HasTFRecordDir, HasBatchSize, HasEpochs, HasReaders, HasSteps):
    """TFoS's ``TFEstimator(train_fn, tf_args, export_fn=None)``: ``fit(df)`` trains
    ``train_fn`` on a TF cluster fed the ``input_mapping`` columns, in the cluster's own stage
    (no task slot beyond ``cluster_size``), and returns a :class:`TFModel`."""

    def __init__(self, train_fn: Callable[[Any, Any], Any], tf_args: Any,
                 export_fn: Optional[Callable] = None):
        super().__init__()
        self.train_fn, self.export_fn = train_fn, export_fn
        self.args = Namespace(tf_args)
        self._setDefault(input_mapping={}, cluster_size=1, num_ps=0, driver_ps_nodes=False,
                         input_mode=InputMode.SPARK, master_node="chief", protocol="grpc",
                         tensorboard=False, model_dir=None, export_dir=None, tfrecord_dir=None,
                         batch_size=100, epochs=1, readers=1, steps=1000, grace_secs=30)

    def _fit(self, dataset: Any) -> "TFModel":
        from tfspark.ml import fit_on_cluster
        if self.export_fn is not None:
            raise NotKeptError("TFEstimator's export_fn (TF1)", "export from train_fn with "
                               "compat.export_saved_model(model, args.export_dir, is_chief)")
        if self.getDriverPSNodes():
            raise NotKeptError("driver_ps_nodes", "parameter servers run as tasks of the "
                               "cluster's stage: count them in cluster_size")
        if self.getInputMode() != InputMode.SPARK:
            raise NotKeptError("TFEstimator with InputMode.TENSORFLOW", "the estimator feeds "
                               "the DataFrame (InputMode.SPARK); to let TF read files, write "
                               "them with dfutil.saveAsTFRecords and use TFCluster.run")
        if self.getProtocol() != "grpc":
            raise NotKeptError(f"protocol={self.getProtocol()!r}", "TF nodes talk gRPC")
        columns = sorted(self.getInputMapping())
        if not columns:
            raise NotKeptError("TFEstimator without an input mapping",
                               "setInputMapping({column: tensor}) names the columns to feed")
        merged = self.merge_args_params()
        tf_args = self.args.argv if self.args.argv else merged
        tensorboard = self.getTensorboard()
        fit_on_cluster(dataset.sparkSession, dataset.select(*columns), None,
                       functools.partial(run_tfos_function, self.train_fn), tf_args,
                       cluster_size=self.getClusterSize(), num_ps=self.getNumPS(),
                       master_node=self.getMasterNode(), epochs=self.getEpochs(),
                       tensorboard=tensorboard,
                       log_dir=self.getModelDir() if tensorboard else None,
                       grace_secs=self.getGraceSecs())
        return self._copyValues(TFModel(self.args))


class TFModel(Model, TFParams, HasInputMapping, HasOutputMapping, HasBatchSize, HasModelDir,
              HasExportDir, HasSignatureDefKey, HasTagSet):
    """TFoS's ``TFModel(tf_args)``: ``transform(df)`` scores the SavedModel at ``export_dir``
    (through :func:`tfspark.predict`: loaded once per Python worker) and returns the
    ``output_mapping`` columns."""

    def __init__(self, tf_args: Any):
        super().__init__()
        self.args = Namespace(tf_args)
        self._setDefault(input_mapping={}, output_mapping={}, batch_size=100, model_dir=None,
                         export_dir=None, signature_def_key=None, tag_set=None)

    def _transform(self, dataset: Any) -> Any:
        from tfspark.scoring import predict
        tags = self.getTagSet()
        if tags and set(t.strip() for t in tags.split(",")) != {"serve"}:
            raise NotKeptError(f"tag_set={tags!r}", "tfspark scores a SavedModel's 'serve' "
                               "meta graph (the one Keras and tf.saved_model.save write)")
        if not self.getExportDir():
            raise NotKeptError("TFModel without export_dir", "setExportDir(path) names the "
                               "SavedModel to score")
        inputs = {tensor: column for column, tensor in self.getInputMapping().items()}
        outputs = dict(self.getOutputMapping())
        scored = predict(dataset.select(*sorted(self.getInputMapping())), self.getExportDir(),
                         signature=self.getSignatureDefKey() or "serving_default",
                         inputs=inputs, outputs=outputs or None,
                         batch_size=self.getBatchSize())
        return scored.select(*[column for _, column in sorted(outputs.items())])
