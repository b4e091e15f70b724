"""Task side of feeding *in the stage*: the data is the TF cluster's barrier stage's own input.

With ``feed_mode="stage"`` (see :meth:`tfspark._driver.cluster.TFCluster.run`) no second Spark job
feeds the nodes, so the cluster needs no task slot beyond its own: the first ``train()``'s RDD or
DataFrame, repartitioned into one partition per node, *is* the stage's input. Each node's task hands
its partition to the training nodes' feed receivers exactly as a feeding task would
(:func:`tfspark._feed.spark_tasks.send_train_partition`): a training node keeps its whole partition
(on its own host), the other nodes (ps, evaluator, a ParameterServerStrategy chief) deal theirs over
the training nodes. The tasks then exchange row counts through ``allGather`` and each tells its own
node that the feed is complete -- the only feed this cluster gets.

Validation rows travel in the same partitions, flagged (a boolean column for DataFrames, a
``(flag, element)`` pair for RDDs); each task sets them aside in a local Arrow file and sends
them, as feed ``-feed_id``, after the training rows.

Runs in the node's Spark task (a Python worker): no TensorFlow, no ``pyspark.sql``.
"""
from __future__ import annotations

import base64
import json
import os
import pickle
import tempfile
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tfspark._feed.arrow_columns import batch_from_elements, chunks, normalize_dataframe_batch
from tfspark._feed.protocol import ARROW, VALIDATION_COLUMN, StageInput
from tfspark._feed.spark_tasks import (FeedError, FeedPlan, send_inference_partition,
                                       send_train_partition, tell_nodes)


@dataclass
class Delivered:
    """What every node's task delivered, summed over the stage (from ``allGather``)."""

    rows_per_node: List[int]
    validation_rows_per_node: List[int]


def _split(stage_input: StageInput, partition: Iterator[Any]
           ) -> Iterator[Tuple[Optional[pa.RecordBatch], Optional[pa.RecordBatch]]]:
    """``(training rows, validation rows)`` batches of a partition (either may be None)."""
    if stage_input.kind == ARROW:
        for batch in partition:
            batch = normalize_dataframe_batch(batch)
            if not stage_input.validation:
                yield batch, None
                continue
            flags = batch.column(VALIDATION_COLUMN)
            rows = batch.drop_columns([VALIDATION_COLUMN])
            yield rows.filter(pc.invert(flags)), rows.filter(flags)
        return
    for chunk in chunks(partition, stage_input.chunk_rows):
        if not stage_input.validation:
            yield batch_from_elements(chunk), None
            continue
        train = [element for flag, element in chunk if not flag]
        held = [element for flag, element in chunk if flag]
        yield (batch_from_elements(train) if train else None,
               batch_from_elements(held) if held else None)


def deliver(task: Any, stage_input: StageInput, plan: FeedPlan, partition_index: int,
            own_share: Optional[int], own_receiver: Optional[Tuple[str, int]],
            partition: Iterator[Any], scratch: str,
            failure: Callable[[], Optional[BaseException]] = lambda: None) -> Delivered:
    """Send this task's partition to the training nodes, agree on the counts with every other
    task, and tell this task's own node (``own_receiver``, if it has one) that the feed is
    complete. Every task calls this exactly once (it holds an ``allGather``), even when its own
    send failed: the error is shared, so no task waits for a count that never comes, and the
    first one raised here as a :class:`~tfspark._feed.spark_tasks.FeedError`.

    ``own_share``: this node's training index, if it trains: its rows all stay with it.
    ``failure`` returns why to stop waiting for a node (e.g. this node was told to stop).
    """
    counts: Dict[str, Any] = {"error": ""}
    try:
        counts.update(_send(stage_input, plan, partition_index, own_share, partition, scratch,
                            failure))
    except Exception as e:  # noqa: BLE001 - shared with every task below, then raised
        counts["error"] = f"{type(e).__name__}: {e}"
    gathered = [json.loads(item) for item in task.allGather(json.dumps(counts))]
    failed = [(i, g["error"]) for i, g in enumerate(gathered) if g["error"]]
    if failed:
        index, error = next(((i, e) for i, e in failed if i == partition_index), failed[0])
        raise FeedError(f"feeding partition {index} of the training data failed: {error}")
    delivered = Delivered(_sum(gathered, "rows", len(plan.addresses)),
                          _sum(gathered, "validation_rows", len(plan.addresses)))
    if own_receiver is not None:
        _tell_complete(stage_input, plan, own_receiver, delivered, gathered, failure)
    return delivered


def _send(stage_input: StageInput, plan: FeedPlan, partition_index: int,
          own_share: Optional[int], partition: Iterator[Any], scratch: str,
          failure: Callable[[], Optional[BaseException]]) -> Dict[str, Any]:
    held_path = os.path.join(tempfile.mkdtemp(prefix="tfspark-validation-", dir=scratch),
                             "rows.arrow")
    held = _HeldRows(held_path)
    try:
        def training_batches() -> Iterator[pa.RecordBatch]:
            for train, validation in _split(stage_input, partition):
                if validation is not None and validation.num_rows:
                    held.write(validation)
                if train is not None and train.num_rows:
                    yield train

        rows, schema = send_train_partition(plan, partition_index, training_batches(),
                                            only=own_share, failure=failure)
        validation_rows, validation_schema = [0] * len(plan.addresses), b""
        if held.rows:
            validation_rows, validation_schema = send_train_partition(
                _validation_plan(plan), partition_index, held.read(), only=own_share,
                failure=failure)
        return {"rows": rows, "validation_rows": validation_rows,
                "schema": base64.b64encode(schema).decode(),
                "validation_schema": base64.b64encode(validation_schema).decode()}
    finally:
        held.remove()


class _HeldRows:
    """Validation rows set aside in a local Arrow file until the training rows are sent."""

    def __init__(self, path: str):
        self.path, self.rows = path, 0
        self._sink = self._writer = None

    def write(self, batch: pa.RecordBatch) -> None:
        if self._writer is None:
            self._sink = pa.OSFile(self.path, "wb")
            self._writer = pa.ipc.new_file(self._sink, batch.schema)
        self._writer.write_batch(batch)
        self.rows += batch.num_rows

    def read(self) -> Iterator[pa.RecordBatch]:
        self._close()
        reader = pa.ipc.open_file(pa.memory_map(self.path))
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i)

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._sink.close()
            self._writer = None

    def remove(self) -> None:
        self._close()
        folder = os.path.dirname(self.path)
        if os.path.exists(self.path):
            os.remove(self.path)
        os.rmdir(folder)


def _validation_plan(plan: FeedPlan) -> FeedPlan:
    return replace(plan, feed_id=-plan.feed_id)


def _sum(gathered: List[Dict[str, Any]], key: str, nodes: int) -> List[int]:
    return [int(v) for v in np.sum([g[key] for g in gathered], axis=0)] if gathered else [0] * nodes


def _first_schema(gathered: List[Dict[str, Any]], key: str) -> bytes:
    return next((base64.b64decode(g[key]) for g in gathered if g[key]), b"")


def _tell_complete(stage_input: StageInput, plan: FeedPlan, own_receiver: Tuple[str, int],
                   delivered: Delivered, gathered: List[Dict[str, Any]],
                   failure: Callable[[], Optional[BaseException]]) -> None:
    """The end of the feed for this task's own node: validation rows first, then the training
    rows marked ``last`` (no other feed comes: ``should_stop`` may end ``next_batch`` loops)."""
    own = replace(plan, addresses=(tuple(own_receiver),), labels=("this node",))
    if stage_input.validation:
        tell_nodes(own, {"type": "end", "feed_id": -plan.feed_id, "num_epochs": 1,
                         "rows_per_node": delivered.validation_rows_per_node,
                         "schema": _first_schema(gathered, "validation_schema"),
                         "has_validation": False}, failure=failure)
    tell_nodes(own, {"type": "end", "feed_id": plan.feed_id, "num_epochs": stage_input.num_epochs,
                     "rows_per_node": delivered.rows_per_node,
                     "schema": _first_schema(gathered, "schema"),
                     "has_validation": stage_input.validation, "last": True}, failure=failure)


def answer(task: Any, stage_input: StageInput, plan: FeedPlan, own_share: Optional[int],
           partition: Iterator[Tuple[Any, Any]], results_path: str,
           failure: Callable[[], Optional[BaseException]] = lambda: None) -> None:
    """Inference: send this task's ``(key, element)`` pairs, in chunks, to its own node (a
    training node's task; other tasks get no rows) and write ``(key, result)`` pairs, in
    order, to ``results_path`` (a pickle stream). Then agree with every task, through
    ``allGather``, that all rows were answered, and tell this node that no more will come."""
    counts: Dict[str, Any] = {"error": ""}
    try:
        own = replace(plan, addresses=plan.addresses[own_share:own_share + 1],
                      labels=plan.labels[own_share:own_share + 1]) if own_share is not None \
            else None
        with open(results_path, "wb") as out:
            for number, chunk in enumerate(chunks(partition, stage_input.chunk_rows)):
                if own is None:
                    raise FeedError("inference rows reached a node that does not take data")
                batch = batch_from_elements([element for _, element in chunk])
                results = send_inference_partition(own, number, batch.schema, iter([batch]),
                                                   failure=failure)
                for (key, _), result in zip(chunk, results):
                    pickle.dump((key, result), out, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as e:  # noqa: BLE001 - shared with every task below, then raised
        counts["error"] = f"{type(e).__name__}: {e}"
    gathered = [json.loads(item) for item in task.allGather(json.dumps(counts))]
    failed = [g["error"] for g in gathered if g["error"]]
    if failed:
        raise FeedError(f"inference failed: {counts['error'] or failed[0]}")
    if own_share is not None:
        tell_nodes(own, {"type": "done"}, failure=failure)


def read_answers(results_path: str) -> Iterator[Tuple[Any, Any]]:
    """The ``(key, result)`` pairs :func:`answer` wrote."""
    with open(results_path, "rb") as f:
        while True:
            try:
                yield pickle.load(f)
            except EOFError:
                return
