"""Driver side of ``InputMode.SPARK``: getting an RDD's or DataFrame's rows to a running TF
cluster's nodes, for training or inference.

Two ways (``TFCluster.run(feed_mode=...)``):

* **job**: each ``train()`` runs a Spark job whose tasks stream their partitions to the training
  nodes (:mod:`tfspark._feed.spark_tasks`); the driver then tells every node the feed's row
  counts, epochs and schema (:func:`deliver`). ``inference()`` returns an RDD whose tasks send
  each partition to a node and read back its answers.
* **stage**: the data is the TF cluster's own barrier stage's input
  (:func:`stage_training_input`, :func:`stage_inference_input`); the nodes' tasks hand it over
  themselves (:mod:`tfspark._feed.stage`) and report what they delivered.

Which node gets which rows: :mod:`tfspark._feed.dealing`. The restart policy stays with
:class:`~tfspark.TFCluster`: these functions work on one attempt.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import pickle
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from tfspark._driver.attempt import Attempt
from tfspark._driver.spark_backend import SparkBackend
from tfspark._feed import spark_tasks
from tfspark._feed.protocol import TRAIN, StageInput
from tfspark._strategies.base import for_roles
from tfspark.errors import PreflightError, TFSparkError
from tfspark.roles import TRAINING_ROLES, Role

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Feed:
    """An RDD/DataFrame given to ``TFCluster.train``, kept to feed a restarted cluster."""

    data: Any
    num_epochs: int
    feed_timeout: float
    validation: Any = None  # rows for model.fit's validation_data (feed.validation_dataset)


@dataclass(frozen=True)
class Delivered:
    """A feed every training node of an attempt holds: how to send one node its share again."""

    plan: spark_tasks.FeedPlan
    data: Any
    num_epochs: int
    has_validation: bool


def check_data(backend: SparkBackend, data: Any, feed_timeout: Any, nodes: int,
               in_stage: bool) -> float:
    """What ``train()``/``inference()`` were given can be fed (and a job mode feed has a task
    slot to run in); returns the timeout as a float."""
    if not (spark_tasks.is_dataframe(data) or hasattr(data, "mapPartitionsWithIndex")):
        raise PreflightError(f"data must be an RDD or a DataFrame, got {type(data)}")
    if not isinstance(feed_timeout, (int, float)) or feed_timeout <= 0:
        raise PreflightError(f"feed_timeout must be a positive number of seconds, "
                             f"got {feed_timeout!r}")
    if backend.connect and not spark_tasks.is_dataframe(data):
        raise PreflightError("under Spark Connect there are no RDDs: feed a "
                             "DataFrame (spark.createDataFrame(...))")
    problem = spark_tasks.unfeedable_column(data) if spark_tasks.is_dataframe(data) else None
    if problem is not None:
        raise PreflightError(f"cannot feed this DataFrame to TF: {problem}")
    slots = None if in_stage else backend.slots()
    if slots is not None and slots <= nodes:
        raise PreflightError(
            f"InputMode.SPARK feeds data with a second Spark job while the {nodes}"
            f" TF nodes hold {nodes} task slots, but the application has {slots} "
            "slots in all: none is free for it. Give the application more executor cores "
            "than num_executors (e.g. spark.executor.cores=2).")
    return float(feed_timeout)


# ---------------------------------------------------------------------------- feeding by job
def deliver(attempt: Attempt, feed: Feed) -> None:
    """Feed ``feed`` (and its validation rows, as feed ``-id``) to the attempt's training
    nodes, telling them when each is complete."""
    plan = feed_plan(attempt, TRAIN, feed.feed_timeout)
    _feed_rows(attempt, plan, feed.data, num_epochs=feed.num_epochs,
               has_validation=feed.validation is not None)
    if feed.validation is not None:
        _feed_rows(attempt, dataclasses.replace(plan, feed_id=-plan.feed_id),
                   feed.validation, num_epochs=1, has_validation=False)


def deliver_micro_batch(attempt: Attempt, feed: Feed, feed_id: int,
                        stream: Dict[str, Any]) -> List[int]:
    """Feed a streaming query's micro-batch (:mod:`tfspark._driver.streaming`) as feed
    ``feed_id``, its end message carrying ``stream`` (batch id, when sent); rows per node. An
    empty micro-batch is not announced: the nodes never see it."""
    plan = dataclasses.replace(feed_plan(attempt, TRAIN, feed.feed_timeout), feed_id=feed_id)
    return _feed_rows(attempt, plan, feed.data, num_epochs=1, has_validation=False,
                      stream=stream)


def discard_micro_batch(attempt: Attempt, feed_id: int) -> None:
    """A micro-batch is trained: the nodes delete its spilled rows."""
    tell_training_nodes(attempt, {"type": "discard", "feed_id": feed_id})


def _feed_rows(attempt: Attempt, plan: spark_tasks.FeedPlan, data: Any, num_epochs: int,
               has_validation: bool, listeners: Optional[List[Any]] = None,
               stream: Optional[Dict[str, Any]] = None) -> List[int]:
    """Run the feeding job for ``plan``, then tell ``listeners`` (default: every node with a
    feed receiver) that the feed is complete; rows per node."""
    if spark_tasks.is_dataframe(data):
        rows = [(r.node, r.rows, r.schema) for r in attempt.run_feed_job(
            lambda: spark_tasks.vectors_as_arrays(data).mapInArrow(
                functools.partial(spark_tasks.dataframe_train_task, plan),
                spark_tasks.TRAIN_RESULT_SCHEMA).collect())]
    else:
        rows = [(node, count, sent["schema"]) for sent in attempt.run_feed_job(
            lambda: data.mapPartitionsWithIndex(
                functools.partial(spark_tasks.rdd_train_task, plan)).collect())
            for node, count in enumerate(sent["rows"])]
    rows_per_node = [sum(count for node, count, _ in rows if node == i)
                     for i in range(len(plan.addresses))]
    logger.info("tfspark: feed %d delivered rows per node %s", plan.feed_id, rows_per_node)
    if stream is not None and not any(rows_per_node):
        return rows_per_node
    listeners = attempt.feed_nodes(listening=True) if listeners is None else listeners
    spark_tasks.tell_nodes(dataclasses.replace(
        plan, addresses=tuple(tuple(n.feed_address) for n in listeners),
        labels=tuple(n.role.label for n in listeners)),
        {"type": "end", "feed_id": plan.feed_id, "rows_per_node": rows_per_node,
         "num_epochs": num_epochs, "schema": next((s for *_, s in rows if s), b""),
         "has_validation": has_validation, "stream": stream},
        failure=lambda: attempt.failure)
    if plan.to_node is None and stream is None:  # micro-batches are deleted once trained
        attempt.delivered_feeds[plan.feed_id] = Delivered(plan, data, num_epochs, has_validation)
    return rows_per_node


def refeed(attempt: Attempt, node: Any) -> None:
    """Send a rejoining node (a PSS worker run again after its executor was lost) its share of
    every feed its lost task held, under the same feed ids; stop it if that fails."""
    trainers = attempt.feed_nodes(listening=False)
    try:
        for feed in list(attempt.delivered_feeds.values()):
            plan = dataclasses.replace(
                feed.plan, addresses=tuple(tuple(n.feed_address) for n in trainers),
                to_node=trainers.index(node))
            _feed_rows(attempt, plan, feed.data, feed.num_epochs, feed.has_validation,
                       listeners=[node])
        logger.info("tfspark: %s got its share of feeds %s again", node.role.label,
                    list(attempt.delivered_feeds))
    except Exception as e:  # noqa: BLE001 - the rejoin fails, not the training
        attempt.drop_rejoiner(node, f"sending it its share of the Spark-fed rows again failed: "
                                    f"{str(e).splitlines()[0] if str(e) else type(e).__name__}")


def feed_plan(attempt: Attempt, mode: str, feed_timeout: float) -> spark_tasks.FeedPlan:
    """The next feed of ``attempt``: its id, the nodes that take it, how long to wait for one."""
    trainers = attempt.feed_nodes(listening=False)
    attempt.feeds += 1
    return spark_tasks.FeedPlan(
        feed_id=attempt.feeds, addresses=tuple(tuple(n.feed_address) for n in trainers),
        labels=tuple(n.role.label for n in trainers), secret=attempt.secret, mode=mode,
        timeout=float(feed_timeout))


def inference_results(plan: spark_tasks.FeedPlan, data: Any) -> Any:
    """An RDD of one result per row of ``data``: its tasks send their partitions to the nodes
    of ``plan`` and read back the answers (lazily, when an action runs)."""
    if spark_tasks.is_dataframe(data):
        results = spark_tasks.vectors_as_arrays(data).mapInArrow(
            functools.partial(spark_tasks.dataframe_inference_task, plan), "result binary")
        return results.rdd.map(lambda row: pickle.loads(row.result))
    return data.mapPartitionsWithIndex(functools.partial(spark_tasks.rdd_inference_task, plan))


def tell_feeds_done(attempt: Attempt) -> None:
    """Tell the training nodes that no more data will come (ends next_batch loops)."""
    tell_training_nodes(attempt, {"type": "done"})


def tell_stream_end(attempt: Attempt, error: Optional[str]) -> None:
    """Tell the training nodes the streaming query ended (their ctx.micro_batches loop ends;
    with the query's ``error``, it raises that)."""
    tell_training_nodes(attempt, {"type": "stream_end", "error": error})


def tell_training_nodes(attempt: Attempt, message: Dict[str, Any]) -> None:
    """Send ``message`` to every running training node's feed receiver, skipping nodes that
    have finished or failed meanwhile (their receiver is gone)."""
    trainers = [n for n in attempt.nodes.values()
                if n.role.job_name in TRAINING_ROLES and n.status is None and n.feed_address]
    plan = spark_tasks.FeedPlan(0, tuple(tuple(n.feed_address) for n in trainers),
                                tuple(n.role.label for n in trainers), attempt.secret,
                                TRAIN, timeout=30.0)
    for node, trainer in enumerate(trainers):
        def ended(trainer=trainer) -> Optional[BaseException]:
            """Stop trying a node that has failed or finished (its receiver is gone):
            else a main_fun that returned without reading its feed costs 30 s a node."""
            if attempt.failure is not None:
                return attempt.failure
            return TFSparkError("finished") if trainer.status is not None else None

        try:
            spark_tasks.tell_nodes(dataclasses.replace(
                plan, addresses=plan.addresses[node:node + 1],
                labels=plan.labels[node:node + 1]), message, failure=ended)
        except (OSError, TFSparkError):
            pass  # that node has finished already


# -------------------------------------------------------------------------- feeding in stage
def stage_training_input(feed: Feed, nodes: int) -> Tuple[Any, StageInput]:
    """(the stage's input data, what the nodes' tasks do with it) for ``feed``."""
    try:
        return spark_tasks.stage_input(feed.data, feed.validation, nodes, feed.num_epochs,
                                       feed.feed_timeout)
    except TFSparkError as e:
        raise PreflightError(str(e)) from None


def stage_inference_input(data: Any, roles: List[Role], timeout: float
                          ) -> Tuple[Any, StageInput]:
    """(the stage's input data, what the nodes' tasks do with it) to score ``data``."""
    targets = [r.worker_num for r in for_roles(roles).data_nodes(roles)]
    return spark_tasks.stage_inference_input(data, targets, len(roles), timeout)


def await_stage_feed(attempt: Attempt) -> None:
    """Until every node's task has delivered its partition of the stage's input."""
    if attempt.detached:
        return  # nothing reports before the stage ends
    attempt.wait_for(lambda: all(n.fed is not None or n.status is not None
                                 for n in attempt.nodes.values()), None, None)
    if attempt.failure is not None:
        raise attempt.failure
    fed = next((n.fed for n in attempt.nodes.values() if n.fed is not None), None)
    if fed is not None:
        logger.info("tfspark: the stage's feed delivered rows per node %s (validation: %s)",
                    fed["rows"], fed["validation_rows"])


def await_answers(attempt: Attempt) -> Any:
    """The stage's answers to the rows it scored (keyed by (partition, position))."""
    attempt.wait_for(lambda: attempt.job_done, None, None)
    if attempt.failure is not None:
        raise attempt.failure
    if attempt.outputs is None:
        attempt.results()  # raises why the stage failed
    return attempt.outputs


def in_input_order(answers: Any, data: Any) -> Any:
    """``answers`` back in ``data``'s partitions and order."""
    partitions = (data.rdd if spark_tasks.is_dataframe(data) else data).getNumPartitions()
    return spark_tasks.in_input_order(answers, partitions)
