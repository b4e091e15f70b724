"""An attempt's node states, from the messages its nodes send (no Spark: messages are given as
the control channel or a detached node's report would deliver them)."""
from __future__ import annotations

from typing import List

from tfspark._driver.attempt import Attempt
from tfspark._driver.progress import TrainingProgress
from tfspark.errors import NodeError, StageError
from tfspark.roles import assign_roles


class Channel:
    """The driver's end of one node's control connection: what was sent on it."""

    def __init__(self):
        self.sent: List[dict] = []

    def send(self, message: dict) -> None:
        self.sent.append(message)


def attempt_of(num_executors, **roles):
    attempt = Attempt(0, assign_roles(num_executors, **roles), backend=None,
                      reservation_timeout=60, progress=TrainingProgress(enabled=False))
    channels = {}
    for worker_num, node in attempt.nodes.items():
        channels[worker_num] = Channel()
        attempt._on_message(channels[worker_num], {"type": "hello", "worker_num": worker_num,
                                                   "host": f"h{worker_num}"})
        attempt._on_message(None, {"type": "started", "worker_num": worker_num})
    return attempt, channels


def finished(attempt, worker_num, status, **fields):
    attempt._on_message(None, dict(fields, type="finished", worker_num=worker_num,
                                   status=status))


def test_mwms_training_is_done_when_every_chief_and_worker_finished():
    attempt, _ = attempt_of(3, chief=True)
    finished(attempt, 0, "ok")
    assert not attempt.training_done()
    finished(attempt, 1, "ok")
    finished(attempt, 2, "ok")
    assert attempt.training_done() and attempt.failure is None


def test_pss_training_is_done_with_the_chief_and_the_servers_are_told_to_stop():
    attempt, channels = attempt_of(4, num_ps=1, chief=True)  # ps, chief, worker, worker
    finished(attempt, 1, "ok")
    assert attempt.training_done() and attempt.failure is None
    for worker_num in (0, 2, 3):
        assert channels[worker_num].sent[-1] == {"type": "stop", "reason": "training finished"}
    assert channels[1].sent == []


def test_the_first_failure_is_kept_and_stops_every_node():
    attempt, channels = attempt_of(2)
    finished(attempt, 1, "error", message="ValueError: bad", traceback="Traceback ...",
             restartable=False)
    finished(attempt, 0, "error", message="later")
    failure = attempt.failure
    assert isinstance(failure, NodeError) and failure.index == 1 and not failure.restartable
    assert "ValueError: bad" in str(failure)
    assert channels[0].sent[-1]["type"] == "stop"


def test_a_training_node_stopped_without_a_failure_fails_the_attempt():
    attempt, _ = attempt_of(2)
    finished(attempt, 0, "stopped", message="lost the connection to the driver")
    assert "it was stopped: lost the connection" in str(attempt.failure)


def test_a_lost_executor_makes_a_restartable_stage_failure():
    attempt, _ = attempt_of(2)
    attempt._on_stage_failed(Exception("Job aborted.\n  ExecutorLostFailure (executor 1 "
                                       "exited caused by one of the running tasks)"))
    assert isinstance(attempt.failure, StageError) and attempt.failure.restartable


def test_a_node_saying_hello_after_a_failure_is_told_to_stop():
    attempt, _ = attempt_of(2)
    finished(attempt, 0, "error", message="boom")
    late = Channel()
    attempt._on_message(late, {"type": "hello", "worker_num": 1, "host": "h1"})
    assert late.sent == [{"type": "stop", "reason": "the TF cluster has failed"}]


def test_tokens_go_to_running_nodes_only_when_they_change():
    attempt, channels = attempt_of(2)
    finished(attempt, 1, "ok")
    attempt.hand_tokens(["t1"])
    attempt.hand_tokens(["t1"])
    assert channels[0].sent == [{"type": "credentials", "tokens": ["t1"]}]
    assert channels[1].sent == []  # finished: nothing more to tell it
