"""Names shared by the driver, the feeding Spark tasks (:mod:`tfspark._feed.spark_tasks`,
:mod:`tfspark._feed.stage`) and the nodes' receivers (:mod:`tfspark._feed.receiver`), kept apart so
that no side imports another (and the node's task stays light)."""
from __future__ import annotations

from dataclasses import dataclass

#: What a data connection is for: training rows to spill, or inference rows to answer.
TRAIN, INFERENCE = "train", "inference"

#: How a node's task reads its partition of the stage's input: a DataFrame's Arrow batches, or
#: an RDD's elements.
ARROW, ELEMENTS = "arrow", "elements"

#: The DataFrame column (added by the driver) that marks validation rows in the stage's input.
VALIDATION_COLUMN = "__tfspark_validation"


@dataclass(frozen=True)
class StageInput:
    """The TF cluster's stage reads training data as its own input (``feed_mode="stage"``):
    how a node's task reads and delivers its partition (see :mod:`tfspark._feed.stage`)."""

    kind: str  # ARROW or ELEMENTS
    num_epochs: int
    timeout: float  # feed_timeout: how long a send may wait on a node
    validation: bool  # rows carry a validation flag (VALIDATION_COLUMN, or (flag, element))
    feed_id: int = 1
    chunk_rows: int = 4096
    mode: str = TRAIN  # INFERENCE: (key, element) pairs in key order; answers are the output
