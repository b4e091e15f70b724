"""Streaming's pure parts: a node's queue of micro-batches, the driver's checks of
train_stream's options, and its progress lines and per-micro-batch history."""
from __future__ import annotations

import io
import threading

import pytest

from tfspark._driver.progress import TrainingProgress
from tfspark._driver.streaming import StreamingTraining, check_options
from tfspark._feed.feed_state import FeedState
from tfspark.errors import FeedDataError, PreflightError


def test_micro_batches_come_in_order_then_none_when_the_query_ends():
    state = FeedState(node_index=1)
    state.end_feed(7, [3, 0], 1, stream={"batch_id": 0})
    state.end_feed(8, [2, 2], 1, stream={"batch_id": 1})
    state.end_feed(1, [5, 5], 2)  # a train() feed is not a micro-batch
    assert [state.next_micro_batch(1).stream["batch_id"] for _ in range(2)] == [0, 1]
    ended = threading.Timer(0.1, state.end_stream, [{"error": None}])
    ended.start()
    assert state.next_micro_batch(10) is None
    assert state.stream_end == {"error": None}
    state.forget(8)
    with pytest.raises(FeedDataError, match="no data arrived for feed 8"):
        state.wait_for_feed(8, 0.01)


def test_an_empty_share_of_a_micro_batch_is_allowed_but_not_of_a_train_feed():
    state = FeedState(node_index=1)
    state.end_feed(7, [3, 0], 1, stream={"batch_id": 0})
    state.end_feed(1, [3, 0], 1)
    assert state.rows_of_this_node(state.next_micro_batch(1)) == 0
    with pytest.raises(FeedDataError, match="received no rows"):
        state.rows_of_this_node(state.wait_for_feed(1, 1))


def test_waiting_for_a_micro_batch_times_out_with_a_message():
    with pytest.raises(FeedDataError, match="no micro-batch arrived within 0.05s"):
        FeedState(0).next_micro_batch(0.05)


class _Stream:
    isStreaming = True


@pytest.mark.parametrize("df, location, trigger, timeout, message", [
    (object(), "ck", None, 10, "takes a streaming DataFrame"),
    (_Stream(), "", None, 10, "needs checkpoint_location"),
    (_Stream(), "ck", "5 seconds", 10, "trigger must be"),
    (_Stream(), "ck", {"a": 1, "b": 2}, 10, "trigger must be"),
    (_Stream(), "ck", None, 0, "batch_timeout must be"),
])
def test_train_stream_options_are_checked_before_the_query_starts(df, location, trigger,
                                                                  timeout, message):
    with pytest.raises(PreflightError, match=message):
        check_options(df, location, trigger, timeout)


def test_progress_lines_and_history_per_micro_batch():
    out = io.StringIO()
    progress = TrainingProgress(out=out, line_secs=3600)
    progress.streaming = True
    training = StreamingTraining(lambda error: None, lambda: None)
    progress.listeners.append(training.on_event)
    progress.on_event({"event": "epoch_end", "epoch": 1, "logs": {"loss": 0.5}, "secs": 1})
    progress.on_event({"event": "stream_batch", "batch_id": 4, "rows": 100, "trained": True,
                       "secs": 2.0, "version": None})
    progress.on_event({"event": "epoch_end", "epoch": 1, "logs": {"loss": 0.25}, "secs": 1})
    progress.on_event({"event": "stream_batch", "batch_id": 5, "rows": 50, "trained": True,
                       "secs": 0.5, "version": "/m/2"})
    progress.on_event({"event": "stream_batch", "batch_id": 5, "rows": 50, "trained": False})
    lines = out.getvalue().splitlines()
    assert lines == [  # the first micro-batch, then at most one a line_secs; skips always
        "tfspark: micro-batch 4: 1 micro-batches, 100 rows trained - loss 0.5000 - 50 rows/s",
        "tfspark: micro-batch 5, which Spark replayed, was trained before (the backup holds "
        "it): skipped"]
    assert training.history == [
        {"batch_id": 4, "rows": 100, "secs": 2.0, "rows_per_sec": 50.0, "version": None,
         "loss": 0.5},
        {"batch_id": 5, "rows": 50, "secs": 0.5, "rows_per_sec": 100.0, "version": "/m/2",
         "loss": 0.25}]
    assert training.skipped == [5] and training.version == "/m/2"
    assert progress.history == []  # a micro-batch's fit is not an epoch of the job


def test_versions_are_due_every_n_micro_batches_or_t_seconds_of_the_drivers_clock():
    from tfspark._feed.micro_batches import export_due
    assert [export_due(n, 0.0, 3, None) for n in (1, 2, 3)] == [False, False, True]
    assert [export_due(1, s, None, 10.0) for s in (0.0, 9.9, 10.0)] == [False, False, True]
    assert export_due(1, 10.0, 3, 10.0) and export_due(3, 0.0, 3, 10.0)
    assert not export_due(5, 100.0, None, None)


def test_a_long_running_querys_history_keeps_the_newest_micro_batches(monkeypatch):
    from tfspark._driver import streaming
    monkeypatch.setattr(streaming, "HISTORY_LENGTH", 2)
    training = StreamingTraining(lambda error: None, lambda: None)
    for batch_id in range(5):
        training.on_event({"event": "stream_batch", "batch_id": batch_id, "rows": 1,
                           "trained": True, "secs": 1.0, "logs": {}})
    assert [h["batch_id"] for h in training.history] == [3, 4]
