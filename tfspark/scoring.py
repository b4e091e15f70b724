"""Batch inference without a TF cluster: score a DataFrame with a SavedModel (``tfspark.predict``).

The driver reads the SavedModel's signature (inputs, outputs, dtypes, shapes) from its
``saved_model.pb`` alone, checks the DataFrame against it -- every input has a column of a type
it can take -- and derives the output columns' Spark types from it. The scoring itself is one
Arrow UDF (``pyspark.sql.functions.arrow_udf``): Spark hands each Python worker Arrow batches of
the input columns, the worker calls the signature on them in chunks of ``batch_size`` rows and
returns one struct column, expanded into the output columns. Every other column passes through
untouched (ML vectors too), and it runs the same under Spark Connect.

The model is loaded once per Python worker process and kept for the tasks that worker runs
next (Spark reuses its Python workers: ``spark.python.worker.reuse``, on by default); a model on
HDFS is copied to the worker's local disk first. Each load is logged to the executor's stderr
(``tfspark: loaded SavedModel ...``). TF there uses ``spark.task.cpus`` threads, as a task
should (``TF_NUM_INTRAOP_THREADS`` in the executors' environment overrides it).
"""
from __future__ import annotations

import os
import sys
import tempfile
import threading
import warnings
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from tfspark import fs, tf_chatter
from tfspark._driver import worker_errors
from tfspark._driver.spark_backend import backend_for
from tfspark.errors import PredictError, TFSparkError

#: Dimension sizes a signature leaves open are None.
Shape = Tuple[Optional[int], ...]


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a signature."""

    name: str
    dtype: str  # numpy name: "float32", "int64", "string" (tf.string), ...
    shape: Shape  # including the batch dimension


@dataclass(frozen=True)
class Signature:
    name: str
    inputs: Tuple[TensorSpec, ...]
    outputs: Tuple[TensorSpec, ...]


@dataclass(frozen=True)
class _Plan:
    """What each Python worker needs to score a batch: plain values only."""

    model: str  # absolute path or URL of the SavedModel version
    signature: str
    inputs: Tuple[TensorSpec, ...]  # in the order of the UDF's arguments
    columns: Tuple[str, ...]  # the column each input reads (for error messages)
    outputs: Tuple[Tuple[TensorSpec, str], ...]  # (output, its column name)
    batch_size: int
    hadoop_conf_dir: Optional[str]
    canceller: Optional[worker_errors.StageCanceller] = None  # ends the job at a data error
    tokens: fs.credentials.HandedTokens = fs.credentials.NO_TOKENS  # to load the model (Kerberos)
    follow: Optional[str] = None  # an export dir whose newest version each task scores with


#: The output that is no model output: the number of the version that scored the row.
VERSION_OUTPUT = TensorSpec("__tfspark_version", "int64", (None,))


def predict(df: Any, model: str, *, signature: str = "serving_default",
            inputs: Optional[Mapping[str, str]] = None,
            outputs: Optional[Mapping[str, str]] = None, batch_size: int = 1024,
            follow_versions: bool = False, version_column: Optional[str] = None) -> Any:
    """``df`` with the SavedModel's outputs for each row added as columns.

    Parameters
    ----------
    df : a DataFrame (classic or Spark Connect).
    model : a SavedModel directory, or an export directory whose highest numbered version is
        used (:func:`tfspark.export.latest_version`); local, or ``hdfs://``.
    signature : which signature of the SavedModel to call.
    inputs : ``{signature input: column}``; inputs not named read the column of their own name.
        Columns may hold numbers, arrays of numbers, ML vectors, strings or binary; an array's
        length must match the input's shape (or its size, which is then reshaped).
    outputs : ``{signature output: column}``: only these outputs, under these names. By
        default every output, under its own name.
    batch_size : rows per call of the model.
    follow_versions : ``model`` is an export directory that training publishes new versions to
        (``ctx.micro_batches(..., export_dir=...)``, :func:`tfspark.export.export_saved_model`):
        every task scores with the newest version when it starts, so a streaming query picks up
        a new version at its next micro-batch, without a restart; each Python worker keeps only
        the version it last loaded. The versions must share the signature's inputs and outputs.
    version_column : add a column with the number of the version that scored each row
        (default with ``follow_versions``: ``"model_version"``).

    Works on streaming DataFrames as on static ones.

    Raises
    ------
    PredictError : before any task runs, for a missing model, signature or column, a column type
        the input cannot take, or an output column name the DataFrame already has; from the
        action that reads the rows, for a null or an array whose shape does not fit its input
        (naming the column) -- raised as ``PredictError`` there too (also a
        ``PySparkException``), on the task's first failure under classic Spark (see
        :mod:`tfspark._driver.worker_errors`).
    """
    from pyspark.sql import functions as F
    from pyspark.sql.functions import ArrowUDFType, arrow_udf

    worker_errors.install()

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise PredictError(f"batch_size must be an int >= 1, got {batch_size!r}")
    path = resolve_model(model)
    follow = _followed_dir(model, path) if follow_versions else None
    if follow_versions and version_column is None:
        version_column = "model_version"
    sig = read_signature(path, signature)
    columns = _input_columns(df, sig, dict(inputs or {}))
    named = _output_columns(df, sig, outputs)
    if version_column is not None:
        _version_number(path)  # a numbered version, or say why not
        named = named + _output_columns(df, Signature(sig.name, (), (VERSION_OUTPUT,)),
                                        {VERSION_OUTPUT.name: version_column})
    backend = backend_for(df.sparkSession)
    plan = _Plan(path, signature, sig.inputs, tuple(columns[s.name] for s in sig.inputs), named,
                 batch_size, os.environ.get("HADOOP_CONF_DIR"),
                 worker_errors.stage_canceller(backend),
                 fs.handed_tokens([path], backend.task_callback_hosts()), follow)
    struct = _struct_type(named)
    with warnings.catch_warnings():  # "prefer type hints": a callable object has none to give
        warnings.simplefilter("ignore", UserWarning)
        score = arrow_udf(_Scorer(plan), returnType=struct, functionType=ArrowUDFType.SCALAR)
    hidden = "__tfspark_predictions"
    scored = df.withColumn(hidden, score(*[_as_array(df, columns[s.name]) for s in sig.inputs]))
    return scored.select(*[F.col(f"`{c}`") for c in df.columns],
                         *[F.col(f"{hidden}.`{col}`").alias(col) for _, col in named])


# ------------------------------------------------------------------------------------ driver
def resolve_model(model: str) -> str:
    """The SavedModel version ``model`` names: itself if it holds ``saved_model.pb``, else the
    latest numbered version under it."""
    from tfspark import export
    url = fs.absolute(str(model))
    if fs.exists(fs.join(url, "saved_model.pb")):
        return url
    try:
        return export.latest_version(url)
    except TFSparkError as e:
        raise PredictError(f"{url} is neither a SavedModel (no saved_model.pb) nor an export "
                           f"directory: {e}") from None


def _followed_dir(model: str, path: str) -> str:
    """The export directory ``follow_versions`` watches: ``model`` itself, not a version."""
    url = fs.absolute(str(model))
    if path.rstrip("/") == url.rstrip("/"):
        raise PredictError(f"follow_versions=True needs an export directory of numbered "
                           f"versions, but {url} is one SavedModel")
    return url


def _version_number(path: str) -> int:
    name = path.rstrip("/").rsplit("/", 1)[-1]
    if not name.isdigit():
        raise PredictError(f"version_column needs a numbered SavedModel version (an export "
                           f"directory's), but {path} is not one")
    return int(name)


def read_signature(path: str, name: str = "serving_default") -> Signature:
    """A SavedModel's signature ``name``, read from its ``saved_model.pb`` (no model load)."""
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow.python.framework import dtypes

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString(fs.read_bytes(fs.join(path, "saved_model.pb")))
    available = sorted({k for graph in proto.meta_graphs for k in graph.signature_def})
    for graph in proto.meta_graphs:
        if name in graph.signature_def:
            found = graph.signature_def[name]
            break
    else:
        raise PredictError(f"the SavedModel {path} has no signature '{name}' (it has: "
                           f"{', '.join(available) or 'none'})")

    def spec(key: str, info: Any) -> TensorSpec:
        dtype = dtypes.as_dtype(info.dtype)
        shape: Shape = ((None,) if info.tensor_shape.unknown_rank else tuple(
            None if d.size < 0 else int(d.size) for d in info.tensor_shape.dim))
        return TensorSpec(key, "string" if dtype == dtypes.string else dtype.as_numpy_dtype
                          .__name__, shape)

    return Signature(name, tuple(spec(k, v) for k, v in sorted(found.inputs.items())),
                     tuple(spec(k, v) for k, v in sorted(found.outputs.items())))


def _input_columns(df: Any, sig: Signature, mapping: Dict[str, str]) -> Dict[str, str]:
    from pyspark.sql import types as T
    unknown = sorted(set(mapping) - {s.name for s in sig.inputs})
    if unknown:
        raise PredictError(f"inputs names {unknown}, which the signature '{sig.name}' does not "
                           f"have (its inputs: {[s.name for s in sig.inputs]})")
    fields = {f.name: f.dataType for f in df.schema.fields}
    columns = {}
    for spec in sig.inputs:
        column = mapping.get(spec.name, spec.name)
        if column not in fields:
            raise PredictError(
                f"the model's input '{spec.name}' {_describe(spec)} reads column '{column}', "
                f"which the DataFrame does not have (columns: {', '.join(fields)}); map it "
                f"with inputs={{'{spec.name}': '<column>'}}")
        kind = _column_kind(fields[column], T)
        wants_text = spec.dtype == "string"
        if kind is None or (kind == "text") != wants_text:
            raise PredictError(f"column '{column}' has type {fields[column].simpleString()}, "
                               f"which the model's input '{spec.name}' {_describe(spec)} cannot "
                               f"take: it needs {'strings or binary' if wants_text else 'numbers, arrays of numbers or ML vectors'}")
        if kind == "scalar" and len(spec.shape) > 1 and _size(spec.shape[1:]) != 1:
            raise PredictError(f"column '{column}' holds one number per row, but the model's "
                               f"input '{spec.name}' takes {_describe(spec)}")
        columns[spec.name] = column
    return columns


def _column_kind(data_type: Any, T: Any) -> Optional[str]:
    from pyspark.ml.linalg import VectorUDT
    if isinstance(data_type, VectorUDT):
        return "array"
    if isinstance(data_type, (T.StringType, T.BinaryType)):
        return "text"
    if isinstance(data_type, T.ArrayType):
        inner = data_type.elementType
        while isinstance(inner, T.ArrayType):
            inner = inner.elementType
        return "array" if isinstance(inner, (T.NumericType, T.BooleanType)) else None
    return "scalar" if isinstance(data_type, (T.NumericType, T.BooleanType)) else None


def _output_columns(df: Any, sig: Signature, mapping: Optional[Mapping[str, str]]
                    ) -> Tuple[Tuple[TensorSpec, str], ...]:
    by_name = {s.name: s for s in sig.outputs}
    if mapping is None:
        named = [(s, s.name) for s in sig.outputs]
    else:
        unknown = sorted(set(mapping) - set(by_name))
        if unknown:
            raise PredictError(f"outputs names {unknown}, which the signature '{sig.name}' does "
                               f"not have (its outputs: {sorted(by_name)})")
        named = [(by_name[k], v) for k, v in mapping.items()]
    taken = sorted({c for _, c in named} & set(df.columns))
    if taken:
        raise PredictError(f"output column(s) {taken} already exist in the DataFrame; rename "
                           "them with outputs={'<output>': '<new column>'}")
    if not named:
        raise PredictError("no output to add: outputs={} names none")
    return tuple(named)


def _struct_type(named: Tuple[Tuple[TensorSpec, str], ...]) -> Any:
    from pyspark.sql import types as T
    scalars = {"float16": T.FloatType(), "float32": T.FloatType(), "float64": T.DoubleType(),
               "int8": T.ByteType(), "int16": T.ShortType(), "int32": T.IntegerType(),
               "int64": T.LongType(), "uint8": T.ShortType(), "uint16": T.IntegerType(),
               "uint32": T.LongType(), "bool": T.BooleanType(), "string": T.BinaryType()}
    fields = []
    for spec, column in named:
        if spec.dtype not in scalars:
            raise PredictError(f"the model's output '{spec.name}' has dtype {spec.dtype}, "
                               "which has no Spark column type; leave it out with outputs=...")
        data_type = scalars[spec.dtype]
        for _ in spec.shape[1:]:
            data_type = T.ArrayType(data_type, containsNull=False)
        fields.append(T.StructField(column, data_type, nullable=False))
    return T.StructType(fields)


def _as_array(df: Any, column: str) -> Any:
    """The UDF's argument for ``column``: ML vectors become arrays of doubles in the JVM."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.ml.linalg import VectorUDT
    from pyspark.sql import functions as F
    if isinstance(df.schema[column].dataType, VectorUDT):
        return vector_to_array(F.col(f"`{column}`"))
    return F.col(f"`{column}`")


def _describe(spec: TensorSpec) -> str:
    dims = ", ".join("?" if d is None else str(d) for d in spec.shape)
    return f"({spec.dtype}, shape [{dims}])"


def _size(dims: Shape) -> Optional[int]:
    total = 1
    for d in dims:
        if d is None:
            return None
        total *= d
    return total


# ------------------------------------------------------------------------------------ worker
_models: Dict[Tuple[str, str], Any] = {}
_models_lock = threading.Lock()
_newest: Dict[str, Tuple[Any, str]] = {}  # export dir -> (task that looked, newest version)


def newest_version(export_dir: str, hadoop_conf_dir: Optional[str] = None,
                   tokens: fs.credentials.HandedTokens = fs.credentials.NO_TOKENS) -> str:
    """The newest version under ``export_dir``, looked up once per task (so a version
    published before a task starts is the one it scores with)."""
    from pyspark import TaskContext

    from tfspark import export
    task = TaskContext.get()
    key = task.taskAttemptId() if task is not None else None
    with _models_lock:
        seen = _newest.get(export_dir)
        if key is not None and seen is not None and seen[0] == key:
            return seen[1]
    fs.use_hadoop_conf(hadoop_conf_dir)
    with tokens.used():
        path = export.latest_version(export_dir)
    with _models_lock:
        _newest[export_dir] = (key, path)
        for old in [k for k in _models if k[0] != path and k[0].startswith(export_dir + "/")]:
            del _models[old]  # one version per export dir in memory
    return path


def loaded_signature(model: str, signature: str, hadoop_conf_dir: Optional[str] = None,
                     tokens: fs.credentials.HandedTokens = fs.credentials.NO_TOKENS) -> Any:
    """The callable signature of ``model``, loaded once per process."""
    key = (model, signature)
    with _models_lock, tokens.used():
        if key not in _models:
            fs.use_hadoop_conf(hadoop_conf_dir)
            from tfspark import export

            # TF starts here, in the Spark worker: its C++ start-up lines stay out of its log
            with tf_chatter.quiet_start():
                import tensorflow as tf
                _threads_per_task(tf)
                # loading reads the variables and assets into memory: the copy can go
                with tempfile.TemporaryDirectory(prefix="tfspark-model-") as download:
                    _models[key] = tf.saved_model.load(
                        export.local_copy(model, download)).signatures[signature]
            print(f"tfspark: loaded SavedModel {model} (signature {signature}) in process "
                  f"{os.getpid()}", file=sys.stderr, flush=True)
        return _models[key]


def _threads_per_task(tf: Any) -> None:
    """One Spark task, its cores: TF in this worker uses ``spark.task.cpus`` threads (not every
    core of the machine, which the executor's other tasks share), unless the environment sets
    ``TF_NUM_INTRAOP_THREADS`` or TF already runs here."""
    if os.environ.get("TF_NUM_INTRAOP_THREADS"):
        return
    from pyspark import TaskContext
    task = TaskContext.get()
    cpus = task.cpus() if task is not None else 1
    try:
        tf.config.threading.set_intra_op_parallelism_threads(cpus)
        tf.config.threading.set_inter_op_parallelism_threads(cpus)
    except RuntimeError:  # TF was initialised in this worker already: leave it as it is
        pass


class _Scorer:
    """The Arrow UDF: input columns' arrays in, one struct array of the outputs out."""

    def __init__(self, plan: _Plan):
        self.plan = plan

    def __call__(self, *arrays: Any) -> Any:
        import numpy as np
        import pyarrow as pa

        plan = self.plan
        rows = len(arrays[0]) if arrays else 0
        if rows == 0:
            return pa.array([], type=self._arrow_struct())
        try:
            tensors = {spec.name: _to_numpy(array, spec, column)
                       for spec, array, column in zip(plan.inputs, arrays, plan.columns)}
        except PredictError as e:  # the data's fault: a retry would fail the same way
            worker_errors.cancel_stage(plan.canceller, e)
            raise
        model = newest_version(plan.follow, plan.hadoop_conf_dir, plan.tokens) \
            if plan.follow else plan.model
        call = loaded_signature(model, plan.signature, plan.hadoop_conf_dir, plan.tokens)
        model_outputs = [spec for spec, _ in plan.outputs if spec != VERSION_OUTPUT]
        missing = sorted({s.name for s in model_outputs} - set(call.structured_outputs)) \
            if plan.follow else []  # (one read at the driver otherwise)
        if missing:
            raise PredictError(f"SavedModel {model} (signature {plan.signature}) has no "
                               f"output(s) {missing}, which the query scores with: the versions "
                               "followed must share one signature")
        results: Dict[str, List[Any]] = {spec.name: [] for spec in model_outputs}
        for start in range(0, rows, plan.batch_size):
            out = call(**{k: v[start:start + plan.batch_size] for k, v in tensors.items()})
            for spec in model_outputs:
                results[spec.name].append(out[spec.name].numpy())
        if len(model_outputs) < len(plan.outputs):
            results[VERSION_OUTPUT.name] = [np.full(rows, _version_number(model), np.int64)]
        arrays_out = [_to_arrow(np.concatenate(results[spec.name]), spec)
                      for spec, _ in plan.outputs]
        return pa.StructArray.from_arrays(arrays_out, names=[c for _, c in plan.outputs])

    def _arrow_struct(self) -> Any:
        import pyarrow as pa
        return pa.struct([pa.field(c, _arrow_type(spec), nullable=False)
                          for spec, c in self.plan.outputs])


def _to_numpy(array: Any, spec: TensorSpec, column: str) -> Any:
    """An Arrow column as the numpy batch ``spec`` takes, or a PredictError naming it."""
    import numpy as np
    import pyarrow as pa

    if array.null_count:
        raise PredictError(f"column '{column}' has null values; fill "
                           "or drop them before predicting")
    if spec.dtype == "string":
        return np.array(array.to_pylist(), dtype=object)
    if pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
        values, row_shape = array, []
        while pa.types.is_list(values.type) or pa.types.is_large_list(values.type):
            lengths = values.value_lengths().to_numpy(zero_copy_only=False)
            if len(lengths) and (lengths != lengths[0]).any():
                raise PredictError(f"column '{column}' has arrays of different lengths "
                                   f"({lengths.min()} to {lengths.max()})")
            row_shape.append(int(lengths[0]) if len(lengths) else 0)
            values = values.flatten()
        data = values.to_numpy(zero_copy_only=False).reshape([len(array)] + row_shape)
    else:
        data = array.to_numpy(zero_copy_only=False).reshape(len(array), *([1] * (
            len(spec.shape) - 1)))
    wanted = spec.shape[1:]
    if tuple(data.shape[1:]) != wanted:
        if None in wanted or _size(wanted) != int(np.prod(data.shape[1:])):
            raise PredictError(f"column '{column}' has rows of shape {list(data.shape[1:])}, "
                               f"but the model's input '{spec.name}' takes {_describe(spec)}")
        data = data.reshape((len(data),) + tuple(wanted))
    return data.astype(spec.dtype, copy=False)


def _arrow_type(spec: TensorSpec) -> Any:
    import pyarrow as pa
    base = pa.binary() if spec.dtype == "string" else pa.from_numpy_dtype(
        {"float16": "float32", "uint8": "int16", "uint16": "int32", "uint32": "int64"}
        .get(spec.dtype, spec.dtype))
    for _ in spec.shape[1:]:
        base = pa.list_(pa.field("element", base, nullable=False))
    return base


def _to_arrow(values: Any, spec: TensorSpec) -> Any:
    """A numpy batch of one output as the Arrow array of its column."""
    import pyarrow as pa
    target = _arrow_type(spec)
    if spec.dtype == "string":
        flat = pa.array(values.reshape(-1).tolist(), type=pa.binary())
    else:
        leaf = target
        while pa.types.is_list(leaf):
            leaf = leaf.value_type
        flat = pa.array(values.reshape(-1).astype(leaf.to_pandas_dtype(), copy=False))
    array = flat
    for size in reversed(values.shape[1:]):
        array = pa.FixedSizeListArray.from_arrays(array, size)
    return array.cast(target)
