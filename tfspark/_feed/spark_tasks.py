"""Spark side of the feed: tasks that stream RDD/DataFrame partitions to the TF nodes.

``TFCluster.train`` runs one Spark job over the data; each of its tasks turns its partition into
Arrow record batches (DataFrames natively, RDD elements via :mod:`tfspark._feed.arrow_columns`) and
streams them, over connections authenticated with the job secret, to the training nodes'
receivers (:mod:`tfspark._feed.receiver`), dealt out by :mod:`tfspark._feed.dealing`'s rule in
contiguous runs (slices of Arrow batches, never copied); ``inference`` sends each partition
whole to its node and waits for one result per row.
"""
from __future__ import annotations

import functools
import pickle
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pyarrow as pa

from tfspark._feed.arrow_columns import (FeedDataError, batch_from_elements, chunks,
                                         normalize_dataframe_batch)
from tfspark._feed.dealing import node_of_partition, shares_of_chunk
from tfspark._feed.protocol import ARROW, ELEMENTS, INFERENCE, VALIDATION_COLUMN, StageInput
from tfspark.control import Connection, connect_authenticated
from tfspark.errors import FeedError, TFSparkError

Address = Tuple[str, int]


@dataclass(frozen=True)
class FeedPlan:
    """What a feeding task needs: plain values computed on the driver."""

    feed_id: int
    addresses: Tuple[Address, ...]  # the training nodes' receivers, by training index
    labels: Tuple[str, ...]  # the same nodes' labels, for error messages
    secret: bytes = field(repr=False)  # never in a repr
    mode: str  # feed.TRAIN or feed.INFERENCE
    timeout: float
    chunk_rows: int = 4096
    to_node: Optional[int] = None  # only the rows dealt to this node (a rejoining node's share)


def connect(plan: FeedPlan, node: int,
            failure: Callable[[], Optional[BaseException]] = lambda: None) -> Connection:
    """Connect to a node's receiver, retrying while it starts, for up to ``plan.timeout``.

    ``failure`` (driver side) returns the TF cluster's failure, if any: it ends the retries,
    since a node that has died will never answer.
    """
    deadline = time.monotonic() + plan.timeout
    while True:
        try:
            connection = connect_authenticated(plan.addresses[node], plan.secret,
                                               timeout=min(30.0, plan.timeout))
            connection.settimeout(plan.timeout)
            return connection
        except OSError as e:
            if failure() is not None:
                raise failure() from e
            if time.monotonic() >= deadline:
                raise FeedError(f"could not reach TF node {plan.labels[node]}'s feed at "
                                f"{plan.addresses[node]} within feed_timeout={plan.timeout}s: "
                                f"{e}") from e
            time.sleep(0.5)


class _Stream:
    """One Arrow stream from this task to one node."""

    def __init__(self, plan: FeedPlan, node: int, partition: int, schema: Optional[pa.Schema],
                 failure: Callable[[], Optional[BaseException]] = lambda: None):
        self.plan, self.node = plan, node
        self.connection = connect(plan, node, failure)
        header = {"type": "data", "feed_id": plan.feed_id, "partition": partition,
                  "mode": plan.mode, "empty": schema is None}
        self.connection.send(header)
        self.sink = self.connection.makefile("wb")
        self.writer = pa.ipc.new_stream(self.sink, schema) if schema is not None else None

    def write(self, batch: pa.RecordBatch) -> None:
        self.writer.write_batch(batch)

    def finish(self) -> Dict[str, Any]:
        """End the stream and wait for the node's answer (rows spilled, or results)."""
        try:
            if self.writer is not None:
                self.writer.close()
            self.sink.flush()
            return self.connection.recv()
        except (OSError, ConnectionError) as e:
            raise FeedError(f"TF node {self.plan.labels[self.node]} did not acknowledge its "
                            f"data within feed_timeout={self.plan.timeout}s: {e}") from e
        finally:
            self.connection.close()


def _slices(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        for start in range(0, batch.num_rows, rows):
            yield batch.slice(start, rows)


def send_train_partition(plan: FeedPlan, partition: int, batches: Iterator[pa.RecordBatch],
                         only: Optional[int] = None,
                         failure: Callable[[], Optional[BaseException]] = lambda: None
                         ) -> Tuple[List[int], bytes]:
    """Deal one partition's rows out to the training nodes.

    Returns the rows sent to each node and the Arrow schema they had (serialized; empty bytes
    for an empty partition).

    Each chunk of rows is cut into one contiguous run per node (see
    :func:`~tfspark._feed.dealing.shares_of_chunk`),
    so every node gets an equal share (to one row) of every partition, however uneven the
    partitions are; with ``only``, every row goes to node ``only``. ``failure`` returns why to
    stop waiting for a node, if any.
    """
    streams: Dict[int, _Stream] = {}
    try:
        return _deal(plan, partition, batches, only, failure, streams)
    except BaseException:
        for stream in streams.values():  # the nodes drop the partial partition
            stream.connection.close()
        raise


def _deal(plan: FeedPlan, partition: int, batches: Iterator[pa.RecordBatch],
          only: Optional[int], failure: Callable[[], Optional[BaseException]],
          streams: Dict[int, "_Stream"]) -> Tuple[List[int], bytes]:
    n = len(plan.addresses)
    rows = [0] * n
    offset, schema = 0, b""
    for batch in _slices(batches, plan.chunk_rows):
        schema = schema or batch.schema.serialize().to_pybytes()
        if only is not None and plan.to_node not in (None, only):
            continue
        if only is not None:
            if only not in streams:
                streams[only] = _Stream(plan, only, partition, batch.schema, failure)
            streams[only].write(batch)
            rows[only] += batch.num_rows
            continue
        start = 0
        for node, count in enumerate(shares_of_chunk(partition + offset, batch.num_rows, n)):
            if count and plan.to_node not in (None, node):
                start += count
            elif count:
                if node not in streams:
                    streams[node] = _Stream(plan, node, partition, batch.schema, failure)
                streams[node].write(batch.slice(start, count))
                rows[node] += count
                start += count
        offset += batch.num_rows
    for node, stream in streams.items():
        spilled = stream.finish()["rows"]
        if spilled != rows[node]:
            raise FeedError(f"TF node {plan.labels[node]} stored {spilled} of {rows[node]} rows "
                            f"of partition {partition}")
    return rows, schema


def send_inference_partition(plan: FeedPlan, partition: int, schema: Optional[pa.Schema],
                             batches: Iterator[pa.RecordBatch],
                             failure: Callable[[], Optional[BaseException]] = lambda: None
                             ) -> List[Any]:
    """Send one partition whole to its node (:func:`~tfspark._feed.dealing.node_of_partition`);
    return its results, one per row."""
    stream = _Stream(plan, node_of_partition(partition, len(plan.addresses)), partition, schema,
                     failure)
    sent = 0
    for batch in batches:
        stream.write(batch)
        sent += batch.num_rows
    answer = stream.finish()
    if answer.get("terminated") and len(answer["results"]) != sent:
        raise FeedError(f"TF node {plan.labels[stream.node]} stopped taking data (its feed was "
                        f"terminated) before answering all {sent} rows of partition {partition}")
    if len(answer["results"]) != sent:
        raise FeedError(f"TF node {plan.labels[stream.node]} gave {len(answer['results'])} "
                        f"results for the {sent} rows of partition {partition}")
    return answer["results"]


# ---------------------------------------------------------------- Spark task functions
def _sent_or_data_error(plan: FeedPlan, partition: int, batches: Iterator[pa.RecordBatch]
                        ) -> Dict[str, Any]:
    """:func:`send_train_partition`'s counts, or the data error that stopped it. A data error
    (nulls, ragged arrays, an unusable type) is the same on every try, so the task returns it
    instead of failing: Spark would run it three more times, and bury the message."""
    try:
        rows, schema = send_train_partition(plan, partition, batches)
        return {"rows": rows, "schema": schema, "error": ""}
    except FeedDataError as e:
        return {"rows": [0] * len(plan.addresses), "schema": b"",
                "error": f"partition {partition}: {e}"}


def rdd_train_task(plan: FeedPlan, partition: int,
                   elements: Iterator[Any]) -> Iterator[Dict[str, Any]]:
    batches = (batch_from_elements(c) for c in chunks(elements, plan.chunk_rows))
    yield _sent_or_data_error(plan, partition, batches)


def rdd_inference_task(plan: FeedPlan, partition: int, elements: Iterator[Any]) -> Iterator[Any]:
    batches = [batch_from_elements(c) for c in chunks(elements, plan.chunk_rows)]
    # an inference partition is sent whole to one node, so its batches are known up front
    schema = batches[0].schema if batches else None
    yield from send_inference_partition(plan, partition, schema, iter(batches))


_TRAIN_RESULT = pa.schema([("node", pa.int32()), ("rows", pa.int64()), ("schema", pa.binary()),
                          ("error", pa.string())])
TRAIN_RESULT_SCHEMA = "node int, rows long, schema binary, error string"


def dataframe_train_task(plan: FeedPlan, batches: Iterator[pa.RecordBatch]
                         ) -> Iterator[pa.RecordBatch]:
    from pyspark import TaskContext
    sent = _sent_or_data_error(plan, TaskContext.get().partitionId(),
                               (normalize_dataframe_batch(b) for b in batches))
    nodes = len(sent["rows"])
    yield pa.RecordBatch.from_pydict({"node": list(range(nodes)), "rows": sent["rows"],
                                      "schema": [sent["schema"]] * nodes,
                                      "error": [sent["error"]] * nodes}, schema=_TRAIN_RESULT)


def dataframe_inference_task(plan: FeedPlan, batches: Iterator[pa.RecordBatch]
                             ) -> Iterator[pa.RecordBatch]:
    from pyspark import TaskContext
    normalized = (normalize_dataframe_batch(b) for b in batches)
    first = next(normalized, None)
    results = send_inference_partition(
        plan, TaskContext.get().partitionId(), first.schema if first is not None else None,
        _prepend(first, normalized))
    yield pa.RecordBatch.from_pydict({"result": [pickle.dumps(r) for r in results]},
                                     schema=pa.schema([("result", pa.binary())]))


def _prepend(first, rest):
    if first is not None:
        yield first
        yield from rest


def tell_nodes(plan: FeedPlan, message: Dict[str, Any],
               failure: Callable[[], Optional[BaseException]]) -> None:
    """Driver: send one message to every training node's receiver and await each ack;
    ``failure`` returns the TF cluster's failure, raised instead of waiting on a dead node."""
    for node in range(len(plan.addresses)):
        connection = connect(plan, node, failure)
        try:
            connection.send(message)
            connection.recv()
        finally:
            connection.close()


def is_dataframe(data: Any) -> bool:
    from pyspark.sql import DataFrame
    return isinstance(data, DataFrame)


def vectors_as_arrays(df):
    """Replace ML Vector columns by arrays of doubles (done in the JVM, before Arrow)."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.ml.linalg import VectorUDT
    for f in df.schema.fields:
        if isinstance(f.dataType, VectorUDT):
            df = df.withColumn(f.name, vector_to_array(f.name))
    return df


def stage_input(data: Any, validation: Any, num_tasks: int, num_epochs: int, timeout: float
                ) -> Tuple[Any, "StageInput"]:
    """Driver: ``data`` (and ``validation``'s rows, flagged) as the input of the TF cluster's
    barrier stage -- ``num_tasks`` partitions, one per node (see :mod:`tfspark._feed.stage`) --
    and how the nodes' tasks read it."""
    if validation is not None and is_dataframe(validation) != is_dataframe(data):
        raise TFSparkError("validation_data must be of the same kind as data (both DataFrames "
                           "or both RDDs)")
    if is_dataframe(data):
        df = vectors_as_arrays(data)
        if validation is not None:
            from pyspark.sql import functions as F
            held = vectors_as_arrays(validation)
            if sorted(held.columns) != sorted(df.columns):
                raise TFSparkError(f"validation_data's columns {held.columns} must be data's "
                                   f"{df.columns}")
            df = df.withColumn(VALIDATION_COLUMN, F.lit(False)).unionByName(
                held.withColumn(VALIDATION_COLUMN, F.lit(True)))
        kind, prepared = ARROW, df.repartition(num_tasks)
    else:
        rdd = data
        if validation is not None:
            rdd = data.map(lambda element: (False, element)).union(
                validation.map(lambda element: (True, element)))
        kind, prepared = ELEMENTS, rdd.repartition(num_tasks)
    return prepared, StageInput(kind, num_epochs, float(timeout), validation is not None)


def unfeedable_column(df: Any) -> Optional[str]:
    """Driver: why a column of ``df`` cannot become a tensor (the rules of
    :func:`tfspark._feed.arrow_columns.normalize_dataframe_batch`, read from the schema), or
    None."""
    from pyspark.ml.linalg import VectorUDT
    from pyspark.sql import types as T
    scalars = (T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType, T.DoubleType)
    for f in df.schema.fields:
        kind = f.dataType
        if isinstance(kind, scalars + (T.BooleanType, T.StringType, T.BinaryType, VectorUDT)):
            continue
        if isinstance(kind, T.ArrayType) and isinstance(kind.elementType, scalars):
            continue
        hint = ("cast it to double" if isinstance(kind, T.DecimalType) else
                "cast it to a number or a string" if isinstance(kind, (
                    T.DateType, T.TimestampType, T.TimestampNTZType)) else
                "use numbers, arrays of numbers, ML vectors, strings or binary")
        return (f"column '{f.name}' has type {kind.simpleString()}, which cannot become a "
                f"tensor: {hint}")
    return None


def stage_inference_input(data: Any, targets: List[int], num_tasks: int, timeout: float
                          ) -> Tuple[Any, StageInput]:
    """Driver: ``data``'s rows as the TF cluster's stage input for inference -- each keyed by
    its (partition, position), whole input partitions given to the training nodes' stage
    partitions ``targets`` (by :func:`~tfspark._feed.dealing.node_of_partition`) and sorted
    there; :func:`in_input_order` puts the answers back in ``data``'s order."""
    rdd = vectors_as_arrays(data).rdd if is_dataframe(data) else data
    staged = rdd.mapPartitionsWithIndex(_keyed).repartitionAndSortWithinPartitions(
        num_tasks, partitionFunc=functools.partial(_node_of, tuple(targets)))
    return staged, StageInput(ELEMENTS, 1, float(timeout), False, mode=INFERENCE)


def in_input_order(answers: Any, partitions: int) -> Any:
    """The values of ``(key, value)`` answers to :func:`stage_inference_input`'s rows, back in
    the input's partitions and order (a shuffle: also what lets Spark run ``take`` and
    ``first`` on it, which a barrier stage's output cannot)."""
    return answers.repartitionAndSortWithinPartitions(
        max(1, partitions), partitionFunc=_input_partition).values()


def _input_partition(key: Tuple[int, int]) -> int:
    return key[0]


def _keyed(partition: int, elements: Iterator[Any]) -> Iterator[Tuple[Tuple[int, int], Any]]:
    for position, element in enumerate(elements):
        yield (partition, position), element


def _node_of(targets: Tuple[int, ...], key: Tuple[int, int]) -> int:
    return targets[node_of_partition(key[0], len(targets))]
