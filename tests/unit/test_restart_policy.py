"""The restart policy: which failures start another attempt, and what is raised when none does."""
from __future__ import annotations

from tfspark._driver.cluster import final_error, may_restart
from tfspark.errors import NodeError, StageError, TFSparkError


def _lost(restartable=True):
    return NodeError("worker", 1, "host-b", "the driver lost contact with it",
                     restartable=restartable)


def test_a_curable_failure_restarts_while_restarts_remain():
    assert may_restart(_lost(), attempts_run=1, max_restarts=2)
    assert may_restart(_lost(), attempts_run=2, max_restarts=2)
    assert not may_restart(_lost(), attempts_run=3, max_restarts=2)
    assert not may_restart(_lost(), attempts_run=1, max_restarts=0)


def test_main_fun_raising_or_a_plain_error_never_restarts():
    assert not may_restart(_lost(restartable=False), attempts_run=1, max_restarts=5)
    assert not may_restart(TFSparkError("timeout"), attempts_run=1, max_restarts=5)
    assert may_restart(StageError("ExecutorLostFailure", restartable=True), 1, 5)


def test_the_final_error_keeps_the_nodes_details_and_lists_every_attempt():
    causes = ["worker:1 lost", "worker:1 lost again", "worker:0 raised ValueError"]
    last = NodeError("worker", 0, "host-a", "ValueError: bad row", "Traceback ...",
                     ["line 1"], restartable=False)
    error = final_error(last, causes)
    assert isinstance(error, NodeError)
    assert (error.role, error.index, error.host, error.restartable) == ("worker", 0, "host-a",
                                                                         False)
    assert all(cause in str(error) for cause in causes)


def test_a_stage_failure_stays_a_stage_error_with_the_attempts():
    error = final_error(StageError("the stage failed: ExecutorLostFailure", True), ["a", "b"])
    assert isinstance(error, StageError) and error.restartable
    assert "attempt 1: a" in str(error) and "attempt 2: b" in str(error)
