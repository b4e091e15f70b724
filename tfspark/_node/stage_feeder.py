"""A node's task handing its partition of the stage's own input (``feed_mode="stage"``) to the
training nodes, in a thread beside the node's process (see :mod:`tfspark._feed.stage`)."""
from __future__ import annotations

import os
import threading
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from tfspark._feed import stage
from tfspark._feed.protocol import INFERENCE, StageInput
from tfspark._feed.spark_tasks import FeedPlan
from tfspark.errors import FeedError
from tfspark.roles import Role


class StageFeeder(threading.Thread):
    """Delivers (training) or answers (inference) this task's partition once; on an error keeps
    its message and calls ``on_error`` with it (the node then fails with it)."""

    def __init__(self, task: Any, stage_input: StageInput, trainers: List[Role],
                 gathered: List[Dict[str, Any]], secret: bytes, role: Role,
                 shard_index: Optional[int], own_receiver: Optional[Tuple[str, int]],
                 partition: Iterator, private_dir: str,
                 stopped: Callable[[], Optional[BaseException]],
                 on_fed: Callable[[Any], None], on_error: Callable[[str], None]):
        super().__init__(name="tfspark-stage-feed", daemon=True)
        self.plan = FeedPlan(
            feed_id=stage_input.feed_id,
            addresses=tuple((gathered[r.worker_num]["address"].rsplit(":", 1)[0],
                             gathered[r.worker_num]["feed_port"]) for r in trainers),
            labels=tuple(r.label for r in trainers), secret=secret, mode=stage_input.mode,
            timeout=stage_input.timeout, chunk_rows=stage_input.chunk_rows)
        self.task, self.stage_input, self.role = task, stage_input, role
        self.shard_index, self.own_receiver = shard_index, own_receiver
        self.partition, self.private_dir = partition, private_dir
        self.stopped, self.on_fed, self.on_error = stopped, on_fed, on_error
        self.answers_path: Optional[str] = None  # inference: this node's answers, once given
        self.error = ""

    def run(self) -> None:
        try:
            self._deliver()
        except Exception as e:  # noqa: BLE001 - reported as this node's failure
            self.error = str(e) if isinstance(e, FeedError) else f"{type(e).__name__}: {e}"
            self.on_error(self.error)

    def _deliver(self) -> None:
        if self.stage_input.mode == INFERENCE:
            path = os.path.join(self.private_dir, "answers.pickle")
            stage.answer(self.task, self.stage_input, self.plan, self.shard_index,
                         self.partition, path, failure=self.stopped)
            self.answers_path = path
            return
        self.on_fed(stage.deliver(self.task, self.stage_input, self.plan, self.role.worker_num,
                                  self.shard_index, self.own_receiver, self.partition,
                                  self.private_dir, failure=self.stopped))
