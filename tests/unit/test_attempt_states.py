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


def test_a_lost_executor_makes_a_restartable_stage_failure(monkeypatch):
    from tfspark import constants
    monkeypatch.setattr(constants, "LOST_EXECUTOR_REPORT_SECS", 0.05)  # no node says more
    attempt, _ = attempt_of(2)
    attempt._on_stage_failed(Exception("Job aborted.\n  ExecutorLostFailure (executor 1 "
                                       "exited caused by one of the running tasks)"))
    assert isinstance(attempt.failure, StageError) and attempt.failure.restartable


def test_a_lost_executor_reported_by_spark_first_is_named_by_its_nodes_dropped_connection():
    """Spark's ExecutorLostFailure can come before the lost node's connection drop: the
    attempt waits for the drop, whose failure names the node (the restart notice says it)."""
    import threading
    attempt, _ = attempt_of(2)
    dropped = threading.Timer(0.2, attempt._node_gone, [attempt.nodes[1]])
    dropped.start()
    attempt._on_stage_failed(Exception("ExecutorLostFailure (executor 1 exited ...)"))
    dropped.join()
    assert attempt.lost_contact() == "worker:1's executor on host h1 was lost"
    assert "worker:1" in str(attempt.failure)  # the node's failure, not Spark's words


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


# ------------------------------------------------- one job per node: a PSS worker lost for good
class Backend:
    """What the attempt asks of Spark here: cancelling a node's job."""

    def __init__(self):
        self.cancelled: List[str] = []

    def cancel(self, group: str) -> None:
        self.cancelled.append(group)


def pss_attempt(workers=2):
    """ps:0, chief:0, worker:0.. as one job per node, every node started and introduced."""
    from tfspark._driver.progress import TrainingProgress as Progress
    progress = Progress(enabled=False)
    attempt = Attempt(0, assign_roles(2 + workers, num_ps=1, chief=True), backend=Backend(),
                      reservation_timeout=60, progress=progress, node_jobs=True)
    channels = {}
    for worker_num in attempt.nodes:
        channels[worker_num] = Channel()
        attempt._on_message(channels[worker_num], {"type": "hello", "worker_num": worker_num,
                                                   "host": f"h{worker_num}"})
    for worker_num in attempt.nodes:
        attempt._on_message(channels[worker_num], {
            "type": "address", "worker_num": worker_num, "address": f"h{worker_num}:100{worker_num}",
            "feed_port": None})
        attempt._on_message(None, {"type": "started", "worker_num": worker_num})
    return attempt, channels, progress


def test_a_pss_workers_lost_executor_leaves_the_others_training(capsys):
    attempt, channels, progress = pss_attempt()
    attempt._on_disconnect(channels[3])  # worker:1
    assert attempt.failure is None and attempt.nodes[3].lost
    assert "worker:1's executor on host h3 was lost; training goes on with 1 of 2 workers" in (
        capsys.readouterr().err)
    assert progress._size() == " (1 of 2 workers)"
    finished(attempt, 1, "ok")  # the chief: servers stopped, the lost node's job cancelled
    assert attempt.failure is None and attempt.backend.cancelled == [
        f"{attempt.job_group}-node-3"]
    assert attempt.lost_nodes() == ("worker:1",)


def test_losing_the_last_worker_the_chief_or_a_ps_fails_the_attempt():
    attempt, channels, _ = pss_attempt()
    attempt._on_disconnect(channels[2])
    attempt._on_disconnect(channels[3])  # no worker left
    assert isinstance(attempt.failure, NodeError) and attempt.failure.restartable
    assert "worker:1" in str(attempt.failure)
    for lost in (0, 1):  # ps:0, chief:0
        attempt, channels, _ = pss_attempt()
        attempt._on_disconnect(channels[lost])
        assert attempt.failure is not None and attempt.failure.restartable


def test_the_barrier_stage_loses_no_node():
    attempt, channels = attempt_of(4, num_ps=1, chief=True)
    attempt._on_disconnect(channels[3])
    assert attempt.failure is not None


def rerun(attempt, worker_num, host, port=2000):
    """Spark runs a lost node's task again on ``host``: its hello and proposed address."""
    channel = Channel()
    attempt._on_message(channel, {"type": "hello", "worker_num": worker_num, "host": host})
    attempt._on_message(channel, {"type": "address", "worker_num": worker_num,
                                  "address": f"{host}:{port}", "feed_port": None})
    return channel


def test_a_lost_worker_run_again_on_its_host_rejoins_at_its_first_address(capsys):
    attempt, channels, progress = pss_attempt()
    attempt._on_disconnect(channels[3])
    channel = rerun(attempt, 3, "h3")
    assert channel.sent[-1] == {"type": "peers", "rejoin": True, "feeds": [], "nodes": [
        {"address": f"h{i}:100{i}", "feed_port": None} for i in range(4)]}
    attempt._on_message(None, {"type": "started", "worker_num": 3})
    assert not attempt.nodes[3].lost and progress._size() == ""
    assert "worker:1 rejoined the training at h3:1003 (2 of 2 workers)" in capsys.readouterr().err
    assert attempt.lost_nodes() == ("worker:1",)


def test_a_lost_worker_run_again_elsewhere_or_after_a_feed_is_told_why_it_cannot_rejoin(capsys):
    attempt, channels, _ = pss_attempt()
    attempt._on_disconnect(channels[3])
    channel = rerun(attempt, 3, "other")
    assert channel.sent[-1]["type"] == "stop"
    assert "first address (h3:1003)" in channel.sent[-1]["reason"]
    finished(attempt, 3, "stopped")
    assert attempt.failure is None and attempt.nodes[3].lost
    assert "worker:1 does not rejoin the training" in capsys.readouterr().err

    attempt, channels, _ = pss_attempt()
    attempt.feeds = 1
    attempt._on_disconnect(channels[2])
    channel = rerun(attempt, 2, "h2")
    assert "Spark-fed rows" in channel.sent[-1]["reason"]


def test_a_task_run_again_before_its_loss_was_seen_counts_as_the_loss():
    attempt, channels, _ = pss_attempt()
    channel = rerun(attempt, 3, "h3")  # the old connection has not dropped yet
    assert attempt.failure is None and channel.sent[-1]["rejoin"] is True


def test_a_finished_nodes_task_run_again_is_told_to_stop_not_introduced():
    attempt, channels, _ = pss_attempt()
    finished(attempt, 2, "stopped")  # worker:0 ended (its executor is then lost, say)
    channel = rerun(attempt, 2, "h2")
    assert channel.sent == [{"type": "stop", "reason": "this node has finished"}]
    assert [sum(m["type"] == "peers" for m in c.sent) for c in channels.values()] == [1] * 4


def test_the_node_whose_connection_dropped_is_named_not_those_stopped_after():
    attempt, channels = attempt_of(3)
    attempt._on_disconnect(channels[2])
    attempt._on_disconnect(channels[0])  # the failed stage's end kills the others' tasks
    assert attempt.lost_contact() == "worker:2's executor on host h2 was lost"
    assert "worker:2" in str(attempt.failure)


def test_a_rejoining_spark_fed_worker_is_told_its_feeds_and_sent_them_again():
    sent_again = []
    attempt, channels, _ = pss_attempt()
    attempt._refeed = lambda attempt, node: sent_again.append(node.role.label)
    attempt.backend.thread = lambda target, name: __import__("threading").Thread(target=target)
    attempt.feeds = 1  # a train() with validation rows, delivered as feeds 1 and -1
    attempt.delivered_feeds = {1: "train rows", -1: "validation rows"}
    attempt._on_disconnect(channels[3])
    channel = rerun(attempt, 3, "h3")
    assert channel.sent[-1]["rejoin"] is True and channel.sent[-1]["feeds"] == [1, -1]
    attempt._on_message(channel, {"type": "started", "worker_num": 3,
                                  "feed_address": ["h3", 4000]})
    import time
    deadline = time.monotonic() + 5
    while not sent_again and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sent_again == ["worker:1"] and attempt.nodes[3].feed_address == ["h3", 4000]


def test_a_rejoiner_whose_feed_failed_is_stopped_and_training_goes_on():
    attempt, channels, _ = pss_attempt()
    attempt._on_disconnect(channels[3])
    channel = rerun(attempt, 3, "h3")
    attempt._on_message(channel, {"type": "started", "worker_num": 3})
    attempt.drop_rejoiner(attempt.nodes[3], "the feed job failed")
    assert channel.sent[-1] == {"type": "stop", "reason": "not rejoining: the feed job failed"}
    finished(attempt, 3, "stopped")
    assert attempt.failure is None and attempt.nodes[3].lost
