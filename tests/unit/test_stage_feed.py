"""The task side of feed_mode="stage" (tfspark._feed.stage), with real feed receivers on loopback:
each task's partition reaches the training nodes' feeds whole, validation rows apart, counts
agreed by every task, and a failure in one task reaches all of them instead of a hang."""
from __future__ import annotations

import threading

import pyarrow as pa
import pytest

from tfspark._feed import stage
from tfspark._feed.datafeed import DataFeed
from tfspark._feed.protocol import ARROW, ELEMENTS, TRAIN, VALIDATION_COLUMN, StageInput
from tfspark._feed.receiver import FeedReceiver
from tfspark._feed.spark_tasks import FeedError, FeedPlan
from tfspark.control import new_secret


class _Gather:
    """``BarrierTaskContext.allGather`` for tasks run as threads of this process."""

    def __init__(self, tasks: int):
        self._items = [None] * tasks
        self._barrier = threading.Barrier(tasks, timeout=30)

    def task(self, index: int):
        gather = self

        class Task:
            def allGather(self, message):  # noqa: N802 - Spark's name
                gather._items[index] = message
                gather._barrier.wait()
                return list(gather._items)

        return Task()


def _receivers(tmp_path, count, secret):
    feeds, addresses = [], []
    for i in range(count):
        feed = DataFeed(i, shuffle=False)
        receiver = FeedReceiver(feed, "127.0.0.1", 0, secret, str(tmp_path / f"spill-{i}"))
        feeds.append(feed)
        addresses.append(("127.0.0.1", receiver._server.server_address[1]))
    return feeds, tuple(addresses)


def _run_tasks(tmp_path, stage_input, partitions, own_shares, feeds_to=2):
    """Run one deliver() per partition in threads; return (results or errors, node feeds)."""
    secret = new_secret()
    feeds, addresses = _receivers(tmp_path, feeds_to, secret)
    plan = FeedPlan(1, addresses, tuple(f"worker:{i}" for i in range(feeds_to)), secret, TRAIN,
                    timeout=20.0, chunk_rows=7)
    gather = _Gather(len(partitions))
    outcomes = [None] * len(partitions)

    def run(i):
        own = own_shares[i]
        try:
            outcomes[i] = stage.deliver(
                gather.task(i), stage_input, plan, i, own,
                addresses[own] if own is not None else None, iter(partitions[i]),
                str(tmp_path))
        except Exception as e:  # noqa: BLE001 - asserted by the test
            outcomes[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(partitions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return outcomes, feeds


def _ids(feed, feed_id):
    served = feed.wait_for_feed(feed_id, timeout=10)
    ids = []
    for _, path, _ in sorted(served.files):
        table = pa.ipc.open_file(pa.memory_map(path)).read_all()
        ids.extend(table.column("id").to_pylist())
    return sorted(ids)


def test_dataframe_partitions_stay_with_their_node_and_validation_rows_come_apart(tmp_path):
    def batch(ids):
        return pa.RecordBatch.from_pydict({
            "id": pa.array(ids, pa.float64()),
            "x": pa.array([[float(i), 1.0] for i in ids], pa.list_(pa.float64())),
            VALIDATION_COLUMN: pa.array([i % 4 == 0 for i in ids])})

    partitions = [[batch(list(range(0, 30))), batch(list(range(30, 45)))],
                  [batch(list(range(45, 60)))],
                  [batch(list(range(60, 71)))]]  # a third task, e.g. an evaluator's
    stage_input = StageInput(ARROW, num_epochs=3, timeout=20.0, validation=True)
    outcomes, feeds = _run_tasks(tmp_path, stage_input, partitions, own_shares=[0, 1, None])

    validation = [i for i in range(71) if i % 4 == 0]
    training = [i for i in range(71) if i % 4]
    assert not any(isinstance(o, Exception) for o in outcomes), outcomes
    assert all(o.rows_per_node == outcomes[0].rows_per_node for o in outcomes)
    assert sum(outcomes[0].rows_per_node) == len(training)
    assert sum(outcomes[0].validation_rows_per_node) == len(validation)
    node0, node1 = (set(_ids(f, 1)) for f in feeds)
    assert set(range(0, 45)) & set(training) <= node0  # its own partition, whole
    assert set(range(45, 60)) & set(training) <= node1
    assert sorted(node0 | node1) == training and not node0 & node1
    assert sorted(_ids(feeds[0], -1) + _ids(feeds[1], -1)) == validation
    for feed in feeds:
        served = feed._feeds[1]
        assert served.ended and served.num_epochs == 3 and served.has_validation
        assert served.schema.names == ["id", "x"]  # the flag column is gone
        assert served.rows_per_node == outcomes[0].rows_per_node
        assert feed._driver_done  # the stage's feed is the last one


def test_rdd_elements_without_validation(tmp_path):
    partitions = [[(float(i), i % 3) for i in range(0, 20)], [], ]
    stage_input = StageInput(ELEMENTS, num_epochs=1, timeout=20.0, validation=False)
    outcomes, feeds = _run_tasks(tmp_path, stage_input, partitions, own_shares=[0, 1])
    assert [o.rows_per_node for o in outcomes] == [[20, 0], [20, 0]]
    rows = feeds[0].next_batch(100)
    assert sorted(r[0] for r in rows) == [float(i) for i in range(20)]
    assert feeds[1]._feeds[1].rows_per_node == [20, 0]


def test_a_failing_partition_fails_every_task_naming_it(tmp_path):
    def rows():
        yield pa.RecordBatch.from_pydict({"id": pa.array([1.0, 2.0])})
        raise ValueError("the source table vanished")

    good = [pa.RecordBatch.from_pydict({"id": pa.array([3.0])})]
    stage_input = StageInput(ARROW, num_epochs=1, timeout=20.0, validation=False)
    outcomes, _ = _run_tasks(tmp_path, stage_input, [good, rows()], own_shares=[0, 1])
    for outcome in outcomes:
        assert isinstance(outcome, FeedError)
        assert "partition 1" in str(outcome) and "the source table vanished" in str(outcome)


def test_a_column_that_cannot_become_a_tensor_is_named(tmp_path):
    bad = [pa.RecordBatch.from_pydict({"when": pa.array([0], pa.timestamp("s"))})]
    stage_input = StageInput(ARROW, num_epochs=1, timeout=20.0, validation=False)
    outcomes, _ = _run_tasks(tmp_path, stage_input, [bad, []], own_shares=[0, 1])
    assert all(isinstance(o, FeedError) and "column 'when'" in str(o) for o in outcomes)


@pytest.mark.parametrize("kind", [ARROW, ELEMENTS])
def test_no_scratch_file_is_left_behind(tmp_path, kind):
    partition = ([pa.RecordBatch.from_pydict({"id": pa.array([1.0, 2.0]),
                                              VALIDATION_COLUMN: pa.array([True, False])})]
                 if kind == ARROW else [(True, (1.0,)), (False, (2.0,))])
    stage_input = StageInput(kind, num_epochs=1, timeout=20.0, validation=True)
    outcomes, _ = _run_tasks(tmp_path, stage_input, [partition], own_shares=[0], feeds_to=1)
    assert outcomes[0].validation_rows_per_node == [1]
    assert not list(tmp_path.glob("tfspark-validation-*"))
