"""The TF cluster as one Spark job per node, for strategies that train on when a node is lost.

A barrier stage is all or nothing: one failed task fails every task of the stage, and Spark
never retries a failed barrier stage (SPARK-25161). So under ParameterServerStrategy a worker's
executor lost for good would stop the parameter servers and the chief, which TF's
ClusterCoordinator could keep training with. Here each node is a one-task job of its own: when
a worker's executor is lost, only its task fails, Spark runs it again when a slot is free
(``spark.task.maxFailures``), and the other nodes go on. What the barrier stage also gave, the
driver keeps doing: preflight checks the slots, and the attempt waits ``reservation_timeout``
for every node to start (gang scheduling) before training begins.

Each node's job has its own job group (``<attempt's group>-node-<worker_num>``), so that the
driver can cancel the task Spark holds for a lost node when training ends without it.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, List, Optional

from tfspark._driver.spark_backend import SparkBackend

#: called with (worker_num, the job's rows or None, its error or None) when a node's job ends
OnEnd = Callable[[int, Optional[list], Optional[BaseException]], None]


class NodeJobs:
    """One Spark job per node of an attempt, each in a thread of its own."""

    def __init__(self, backend: SparkBackend, group: str, profile: Any, on_end: OnEnd):
        self._backend = backend
        self._group = group
        self._profile = profile
        self._on_end = on_end

    def group_of(self, worker_num: int) -> str:
        return f"{self._group}-node-{worker_num}"

    def start(self, worker_nums: Iterable[int], task: Callable, labels: List[str],
              attempt: int) -> None:
        """Start ``task`` (a ``mapPartitions`` function over a partition holding the node's
        worker_num) as each node's job."""
        for worker_num in worker_nums:
            description = f"tfspark: TF node {labels[worker_num]} (attempt {attempt + 1})"
            self._backend.thread(lambda n=worker_num, d=description: self._run(n, task, d),
                                 f"tfspark-node-{worker_num}").start()

    def _run(self, worker_num: int, task: Callable, description: str) -> None:
        rows: Optional[list] = None
        error: Optional[BaseException] = None
        try:
            rows = self._backend.run_node_job(worker_num, task, self.group_of(worker_num),
                                              description, self._profile)
        except BaseException as e:  # noqa: B902 - the attempt decides what it means
            error = e
        self._on_end(worker_num, rows, error)

    def cancel(self, worker_nums: Iterable[int]) -> None:
        for worker_num in worker_nums:
            self._backend.cancel(self.group_of(worker_num))
