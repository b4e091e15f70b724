"""Spark ML pipeline stages: :class:`TFEstimator` trains on a TF cluster, :class:`TFModel` scores.

    from pyspark.ml import Pipeline
    from pyspark.ml.feature import VectorAssembler
    from tfspark.ml import TFEstimator

    estimator = TFEstimator(train_fn, args, featuresCol="features", labelCol="label",
                            clusterSize=2, epochs=5, batchSize=64, exportDir="hdfs:///models/m")
    model = Pipeline(stages=[VectorAssembler(...), estimator]).fit(df)   # a PipelineModel
    model.transform(test_df)                  # adds the SavedModel's outputs as columns
    model.write().overwrite().save("hdfs:///pipelines/m")   # PipelineModel.load(...) elsewhere

``fit(df)`` starts ``TFCluster.run(spark, train_fn, args, clusterSize, ...)`` with
``InputMode.SPARK`` and ``feed_mode="stage"``, and gives it the feature and label columns (and
the validation rows, from ``validationCol`` or ``validationFraction``) with ``cluster.train``:
the DataFrame's rows are the TF cluster's own stage input, so ``fit`` needs no task slot beyond
the ``clusterSize`` nodes'. ``train_fn(args, ctx)``
runs on every node as any tfspark ``main_fun``; ``args`` is a :class:`TrainArgs`: the user's
``args`` plus the estimator's settings (``batch_size``, ``epochs``, ``features``, ``label``,
``export_dir``, ``model_dir``, ``has_validation``), so it reads
``ctx.get_data_feed().dataset(args.batch_size, label=args.label)`` (and
``feed.validation_dataset(...)`` when ``args.has_validation``), fits, and exports with
``tfspark.export.export_saved_model(model, args.export_dir, ctx)``. The fitted
:class:`TFModel` points at the version that export made, and transforms with
:func:`tfspark.predict`.

Both stages persist through Spark ML's default params format (``DefaultParamsWritable``): the
fitted model is its SavedModel path and mappings, so a saved ``PipelineModel`` loads in another
application and scores the same (the SavedModel must be where that application can read it,
e.g. HDFS). The estimator's ``train_fn`` is saved cloudpickled.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

from pyspark.ml import Estimator, Model
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

from tfspark.errors import TFMLError


def fit_on_cluster(spark: Any, train: Any, validation: Any, train_fn: Callable[[Any, Any], Any],
                   args: Any, *, cluster_size: int, num_ps: int = 0,
                   min_workers: Optional[int] = None,
                   master_node: Optional[str] = None, epochs: int = 1, tensorboard: bool = False,
                   log_dir: Optional[str] = None, grace_secs: float = 30.0,
                   mlflow: Any = None) -> List[Dict[str, float]]:
    """Run ``train_fn(args, ctx)`` on a TF cluster of ``cluster_size`` nodes whose Spark stage
    takes ``train`` (and the ``validation`` rows) as its own input (``feed_mode="stage"``: no
    task slot beyond the nodes'); return the chief's ``model.fit`` epochs (``cluster.history``).
    What an estimator's ``fit`` runs (also TensorFlowOnSpark's, in :mod:`tfspark.compat`)."""
    from tfspark._driver.cluster import TFCluster
    from tfspark.roles import InputMode
    cluster = TFCluster.run(spark, train_fn, args, cluster_size, num_ps=num_ps,
                            min_workers=min_workers,
                            tensorboard=tensorboard, log_dir=log_dir, master_node=master_node,
                            input_mode=InputMode.SPARK, feed_mode="stage", mlflow=mlflow)
    cluster.train(train, num_epochs=epochs, validation_data=validation)
    cluster.shutdown(grace_secs=grace_secs)
    return cluster.history


@dataclass
class TrainArgs:
    """What ``train_fn`` gets as ``args``: the estimator's settings and the user's ``args``."""

    user: Any
    batch_size: int
    epochs: int
    features: List[str]  # the fed feature columns (the dataset's features, by name)
    label: Optional[str]
    export_dir: str
    model_dir: Optional[str]
    has_validation: bool

    def __getattr__(self, name: str) -> Any:  # the user's args' attributes, TFoS-style
        user = self.__dict__.get("user")
        if user is not None and hasattr(user, name):
            return getattr(user, name)
        if isinstance(user, dict) and name in user:
            return user[name]
        raise AttributeError(name)


class _SharedParams(Params):
    inputMapping = Param(Params._dummy(), "inputMapping",
                         "{SavedModel signature input: column}; default: the features column "
                         "feeds the signature's only input", typeConverter=None)
    outputMapping = Param(Params._dummy(), "outputMapping",
                          "{SavedModel signature output: column}; default: every output under "
                          "its own name", typeConverter=None)
    signature = Param(Params._dummy(), "signature", "SavedModel signature to call",
                      typeConverter=TypeConverters.toString)
    batchSize = Param(Params._dummy(), "batchSize", "rows per batch (per worker in training)",
                      typeConverter=TypeConverters.toInt)

    def __init__(self):
        super().__init__()
        self._setDefault(signature="serving_default", batchSize=64, inputMapping=None,
                         outputMapping=None)

    def getInputMapping(self) -> Optional[Dict[str, str]]:
        return self.getOrDefault(self.inputMapping)

    def setInputMapping(self, value: Optional[Dict[str, str]]) -> "_SharedParams":
        return self._set(inputMapping=value)

    def getOutputMapping(self) -> Optional[Dict[str, str]]:
        return self.getOrDefault(self.outputMapping)

    def setOutputMapping(self, value: Optional[Dict[str, str]]) -> "_SharedParams":
        """``{signature output: column}``: only these outputs, under these names."""
        return self._set(outputMapping=value)

    def getSignature(self) -> str:
        return self.getOrDefault(self.signature)

    def setSignature(self, value: str) -> "_SharedParams":
        return self._set(signature=value)

    def getBatchSize(self) -> int:
        return self.getOrDefault(self.batchSize)

    def setBatchSize(self, value: int) -> "_SharedParams":
        return self._set(batchSize=value)


class TFEstimator(Estimator, _SharedParams, DefaultParamsReadable, DefaultParamsWritable):
    """Trains ``train_fn`` on a TF cluster from a DataFrame; ``fit`` returns a :class:`TFModel`."""

    featuresCol = Param(Params._dummy(), "featuresCol", "feature column(s): a name, or a list",
                        typeConverter=None)
    labelCol = Param(Params._dummy(), "labelCol", "label column (None: no label)",
                     typeConverter=None)
    clusterSize = Param(Params._dummy(), "clusterSize", "TF nodes (chief/workers + ps)",
                        typeConverter=TypeConverters.toInt)
    numPS = Param(Params._dummy(), "numPS", "parameter servers", typeConverter=TypeConverters.toInt)
    minWorkers = Param(Params._dummy(), "minWorkers",
                       "restart on fewer workers, down to this many, when executors are lost "
                       "for good (None: wait for every one)", typeConverter=None)
    masterNode = Param(Params._dummy(), "masterNode", "'chief' to add a chief, else None",
                       typeConverter=None)
    epochs = Param(Params._dummy(), "epochs", "training epochs", typeConverter=TypeConverters.toInt)
    exportDir = Param(Params._dummy(), "exportDir", "where train_fn exports SavedModel versions",
                      typeConverter=TypeConverters.toString)
    modelDir = Param(Params._dummy(), "modelDir", "checkpoints/backup directory (optional)",
                     typeConverter=None)
    validationCol = Param(Params._dummy(), "validationCol",
                          "boolean column marking validation rows", typeConverter=None)
    validationFraction = Param(Params._dummy(), "validationFraction",
                               "fraction of rows held out for validation (seeded)",
                               typeConverter=None)
    seed = Param(Params._dummy(), "seed", "seed of the validation split",
                 typeConverter=TypeConverters.toInt)
    trainFn = Param(Params._dummy(), "trainFn", "cloudpickled train_fn and args (base64)",
                    typeConverter=TypeConverters.toString)
    mlflow = Param(Params._dummy(), "mlflow", "track fit in MLflow: True, an experiment name, "
                   "or a dict of options (TFCluster.run(mlflow=...); docs/tracking.md)",
                   typeConverter=None)

    def __init__(self, train_fn: Optional[Callable[[Any, Any], Any]] = None, args: Any = None, *,
                 featuresCol: Any = "features", labelCol: Optional[str] = "label",
                 clusterSize: int = 2, numPS: int = 0, masterNode: Optional[str] = None,
                 minWorkers: Optional[int] = None,
                 epochs: int = 1, batchSize: int = 64, exportDir: Optional[str] = None,
                 modelDir: Optional[str] = None, validationCol: Optional[str] = None,
                 validationFraction: Optional[float] = None, seed: int = 0,
                 inputMapping: Optional[Dict[str, str]] = None,
                 outputMapping: Optional[Dict[str, str]] = None,
                 signature: str = "serving_default", mlflow: Any = None):
        super().__init__()
        self._setDefault(featuresCol="features", labelCol="label", clusterSize=2, numPS=0,
                         minWorkers=None, mlflow=None,
                         masterNode=None, epochs=1, modelDir=None, validationCol=None,
                         validationFraction=None, seed=0)
        if train_fn is not None:
            self.setTrainFn(train_fn, args)
        self._set(featuresCol=featuresCol, labelCol=labelCol, clusterSize=clusterSize,
                  numPS=numPS, masterNode=masterNode, minWorkers=minWorkers, epochs=epochs,
                  batchSize=batchSize,
                  modelDir=modelDir, validationCol=validationCol,
                  validationFraction=validationFraction, seed=seed, inputMapping=inputMapping,
                  outputMapping=outputMapping, signature=signature, mlflow=mlflow)
        if exportDir is not None:
            self._set(exportDir=exportDir)

    def setTrainFn(self, train_fn: Callable[[Any, Any], Any], args: Any = None) -> "TFEstimator":
        from pyspark import cloudpickle
        return self._set(trainFn=base64.b64encode(cloudpickle.dumps((train_fn, args))).decode())

    def _train_fn(self):
        import pickle
        if not self.isDefined(self.trainFn):
            raise TFMLError("TFEstimator needs a train_fn: TFEstimator(train_fn, args, ...)")
        return pickle.loads(base64.b64decode(self.getOrDefault(self.trainFn)))

    def _check_settings(self) -> None:
        """Refuse settings that cannot work, naming the estimator's own param, before any
        Spark job: else the cluster starts and a node fails seconds later inside train_fn."""
        _check_count(self, "batchSize", 1)
        _check_count(self, "epochs", 1)
        _check_count(self, "clusterSize", 1)
        _check_count(self, "numPS", 0)
        size, ps = self.getOrDefault(self.clusterSize), self.getOrDefault(self.numPS)
        if ps >= size:
            raise TFMLError(f"TFEstimator numPS={ps} leaves no worker in clusterSize={size}: "
                            "clusterSize counts the parameter servers too")
        least = self.getOrDefault(self.minWorkers)
        if least is not None and (isinstance(least, bool) or not isinstance(least, int) or not (
                1 <= least <= size - ps) or ps):
            raise TFMLError(f"TFEstimator minWorkers must be None or an int from 1 to the "
                            f"{size - ps} training nodes, without numPS; got {least!r}")
        master = self.getOrDefault(self.masterNode)
        if master not in (None, "chief"):
            raise TFMLError(f"TFEstimator masterNode must be None or 'chief', got {master!r}")
        fraction = self.getOrDefault(self.validationFraction)
        if fraction is not None and (isinstance(fraction, bool) or not isinstance(
                fraction, (int, float)) or not 0 < fraction < 1):
            raise TFMLError("TFEstimator validationFraction must be a number between 0 and 1 "
                            f"(exclusive), got {fraction!r}")
        if self.getOrDefault(self.validationCol) and fraction:
            raise TFMLError("set validationCol or validationFraction, not both")

    def _fit(self, dataset: Any) -> "TFModel":
        from tfspark import export

        self._check_settings()
        features = self.getOrDefault(self.featuresCol)
        features = [features] if isinstance(features, str) else list(features)
        label = self.getOrDefault(self.labelCol)
        export_dir = self.getOrDefault(self.exportDir) if self.isDefined(self.exportDir) else None
        if not export_dir:
            raise TFMLError("TFEstimator needs exportDir: where train_fn exports the model "
                            "(tfspark.export.export_saved_model(model, args.export_dir, ctx))")
        missing = [c for c in features + ([label] if label else []) if c not in dataset.columns]
        if missing:
            raise TFMLError(f"TFEstimator: the DataFrame has no column(s) {missing} (columns: "
                            f"{', '.join(dataset.columns)})")
        train, validation = self._split(dataset, features + ([label] if label else []))
        train_fn, user_args = self._train_fn()
        args = TrainArgs(user_args, self.getOrDefault(self.batchSize),
                         self.getOrDefault(self.epochs), features, label, export_dir,
                         self.getOrDefault(self.modelDir), validation is not None)
        before = export.versions(export_dir)
        history = fit_on_cluster(dataset.sparkSession, train, validation, train_fn, args,
                                 cluster_size=self.getOrDefault(self.clusterSize),
                                 num_ps=self.getOrDefault(self.numPS),
                                 min_workers=self.getOrDefault(self.minWorkers),
                                 master_node=self.getOrDefault(self.masterNode),
                                 epochs=args.epochs, mlflow=self.getOrDefault(self.mlflow))
        after = export.versions(export_dir)
        if after == before:
            raise TFMLError(f"train_fn exported no new model version under {export_dir}: call "
                            "tfspark.export.export_saved_model(model, args.export_dir, ctx) "
                            "on every node at the end of train_fn")
        path = export.latest_version(export_dir)
        model = TFModel(modelPath=path, inputMapping=self._input_mapping(path, features),
                        outputMapping=self.getOrDefault(self.outputMapping),
                        signature=self.getOrDefault(self.signature),
                        batchSize=max(1024, self.getOrDefault(self.batchSize)))
        model.history = history
        return model

    def _split(self, dataset: Any, columns: List[str]):
        validation_col = self.getOrDefault(self.validationCol)
        fraction = self.getOrDefault(self.validationFraction)
        if validation_col:
            if validation_col not in dataset.columns:
                raise TFMLError(f"validationCol '{validation_col}' is not a column of the "
                                "DataFrame")
            from pyspark.sql import functions as F
            flag = F.col(f"`{validation_col}`")
            return (dataset.where(~flag).select(*columns),
                    dataset.where(flag).select(*columns))
        if fraction:
            train, validation = dataset.select(*columns).randomSplit(
                [1 - float(fraction), float(fraction)], seed=self.getOrDefault(self.seed))
            return train, validation
        return dataset.select(*columns), None

    def _input_mapping(self, path: str, features: List[str]) -> Optional[Dict[str, str]]:
        """The user's mapping; else one features column feeds the signature's only input."""
        from tfspark.scoring import read_signature
        mapping = self.getOrDefault(self.inputMapping)
        if mapping:
            return dict(mapping)
        inputs = read_signature(path, self.getOrDefault(self.signature)).inputs
        if len(features) == 1 and len(inputs) == 1:
            return {inputs[0].name: features[0]}
        return None  # each input reads the column of its own name


class TFModel(Model, _SharedParams, DefaultParamsReadable, DefaultParamsWritable):
    """A SavedModel version as a Spark ML Model: ``transform`` adds its outputs as columns."""

    modelPath = Param(Params._dummy(), "modelPath", "the SavedModel version (local or HDFS)",
                      typeConverter=TypeConverters.toString)
    followVersions = Param(Params._dummy(), "followVersions",
                           "modelPath is an export directory: score each task with its newest "
                           "version (streaming: picked up at the next micro-batch)",
                           typeConverter=TypeConverters.toBoolean)
    versionCol = Param(Params._dummy(), "versionCol",
                       "column for the number of the version that scored each row (default "
                       "with followVersions: model_version)", typeConverter=None)

    def __init__(self, *, modelPath: Optional[str] = None,
                 inputMapping: Optional[Dict[str, str]] = None,
                 outputMapping: Optional[Dict[str, str]] = None,
                 signature: str = "serving_default", batchSize: int = 1024,
                 followVersions: bool = False, versionCol: Optional[str] = None):
        super().__init__()
        self._setDefault(batchSize=1024, followVersions=False, versionCol=None)
        self._set(inputMapping=inputMapping, outputMapping=outputMapping, signature=signature,
                  batchSize=batchSize, followVersions=followVersions, versionCol=versionCol)
        if modelPath is not None:
            self._set(modelPath=modelPath)
        self.history: List[Dict[str, float]] = []  # the training epochs, when fit made it

    def getModelPath(self) -> str:
        """The SavedModel version this model scores with (the one ``fit`` exported)."""
        return self.getOrDefault(self.modelPath)

    def setModelPath(self, value: str) -> "TFModel":
        return self._set(modelPath=value)

    def _transform(self, dataset: Any) -> Any:
        from tfspark.scoring import predict
        if not self.isDefined(self.modelPath):
            raise TFMLError("TFModel needs modelPath: a SavedModel version (or export dir)")
        _check_count(self, "batchSize", 1)
        return predict(dataset, self.getOrDefault(self.modelPath),
                       signature=self.getOrDefault(self.signature),
                       inputs=self.getOrDefault(self.inputMapping),
                       outputs=self.getOrDefault(self.outputMapping),
                       batch_size=self.getOrDefault(self.batchSize),
                       follow_versions=self.getOrDefault(self.followVersions),
                       version_column=self.getOrDefault(self.versionCol))


def _check_count(stage: Params, name: str, least: int) -> None:
    value = stage.getOrDefault(getattr(stage, name))
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise TFMLError(f"{type(stage).__name__} {name} must be an int >= {least}, "
                        f"got {value!r}")
