"""Reading a node's spill back: batch plans, epoch orders and gathers (no Spark, no TF)."""
import numpy as np
import pyarrow as pa
import pytest

from tfspark._feed.arrow_columns import (FeedDataError, batch_from_elements,
                                         normalize_dataframe_batch)
from tfspark._feed.spill import SpilledRows, batch_sizes, epoch_order, steps_per_epoch


@pytest.mark.parametrize("rows,steps,batch", [
    (1000, 16, 64), (960, 16, 64), (961, 16, 64), (16, 16, 64), (100, 10, 10), (7, 7, 1),
    (130, 3, 64), (65, 2, 64)])
def test_batch_plan_uses_every_row_once_in_the_agreed_steps(rows, steps, batch):
    sizes = batch_sizes(rows, steps, batch)
    assert len(sizes) == steps and sum(sizes) == rows
    assert all(1 <= s <= batch for s in sizes)
    full = [s == batch for s in sizes]
    assert full == sorted(full, reverse=True)  # full batches first


def test_the_largest_share_fills_whole_batches_but_its_last():
    steps = steps_per_epoch([1000, 963], 64)
    assert steps == 16
    assert batch_sizes(1000, steps, 64) == [64] * 15 + [40]
    assert batch_sizes(963, steps, 64) == [64] * 15 + [3]


def test_too_few_rows_for_the_agreed_steps_is_refused_with_the_fix():
    with pytest.raises(FeedDataError, match="cannot fill the 10 batches .* smaller batch_size"):
        batch_sizes(9, 10, 64)


def test_epoch_orders_are_permutations_fresh_each_epoch_and_reproducible():
    first, second = epoch_order(500, True, 7, 0), epoch_order(500, True, 7, 1)
    assert sorted(first) == sorted(second) == list(range(500))
    assert list(first) != list(second)
    assert list(first) == list(epoch_order(500, True, 7, 0))
    assert list(first) != list(epoch_order(500, True, 8, 0))
    assert list(epoch_order(5, False, 7, 3)) == [0, 1, 2, 3, 4]


def _spill(tmp_path, name, batches):
    path = str(tmp_path / name)
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, batches[0].schema) as out:
        for batch in batches:
            out.write_batch(batch)
    return path


def _table_file(tmp_path, name, ids):
    batches = []
    for chunk in np.array_split(ids, 3):
        batches.append(normalize_dataframe_batch(pa.RecordBatch.from_pydict({
            "id": pa.array(chunk, pa.int64()),
            "x": pa.array([[float(i), -float(i)] for i in chunk], pa.list_(pa.float32())),
            "tag": pa.array([f"t{i}" for i in chunk])})))
    return _spill(tmp_path, name, batches)


def test_gathers_rows_in_any_order_across_files_and_chunks(tmp_path):
    paths = [_table_file(tmp_path, "a", np.arange(0, 50)), _table_file(tmp_path, "b",
                                                                         np.arange(50, 80))]
    rows = SpilledRows(paths)
    assert rows.num_rows == 80
    order = epoch_order(80, True, 3, 0)
    got = rows.take(order)
    assert got["id"].tolist() == order.tolist()
    assert got["x"].shape == (80, 2) and got["x"][:, 0].tolist() == order.astype(float).tolist()
    assert got["tag"].tolist() == [f"t{i}" for i in order]


def test_batches_follow_the_plan_in_blocks(tmp_path, monkeypatch):
    import tfspark._feed.spill
    monkeypatch.setattr(tfspark._feed.spill, "BLOCK_BYTES", 100)  # a few rows per gather
    rows = SpilledRows([_table_file(tmp_path, "a", np.arange(37))])
    order = epoch_order(37, True, 1, 2)
    sizes = batch_sizes(37, 5, 8)
    got = list(rows.batches(order, sizes))
    assert [len(b["id"]) for b in got] == sizes
    assert np.concatenate([b["id"] for b in got]).tolist() == order.tolist()


def test_rdd_structures_round_trip(tmp_path):
    batch = batch_from_elements([(np.ones((2, 2)) * i, i) for i in range(6)])
    rows = SpilledRows([_spill(tmp_path, "r", [batch])])
    got = rows.take(np.array([5, 0]))
    assert got["_0"].shape == (2, 2, 2) and got["_0"][0, 0, 0] == 5 and got["_1"].tolist() == [5, 0]


def test_runs_in_fed_order_and_scrambled_runs_are_gathered_alike(tmp_path):
    rows = SpilledRows([_table_file(tmp_path, "a", np.arange(30))])
    for order in (np.arange(30), np.array([0, 2, 1, 3]), np.array([5, 4]), np.arange(29, -1, -1)):
        got = rows.take(order)
        assert got["id"].tolist() == order.tolist()
        assert got["tag"].tolist() == [f"t{i}" for i in order]


def test_laid_out_columns_gather_the_same_rows(tmp_path):
    paths = [_table_file(tmp_path, "a", np.arange(0, 50)), _table_file(tmp_path, "b",
                                                                         np.arange(50, 80))]
    plain, laid_out = SpilledRows(paths), SpilledRows(paths, str(tmp_path / "columns"))
    assert sorted(p.name for p in (tmp_path / "columns").iterdir()) == ["column-0.npy",
                                                                         "column-1.npy"]
    for order in (epoch_order(80, True, 4, 0), np.arange(80), np.arange(10, 20)):
        a, b = plain.take(order), laid_out.take(order)
        assert all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("laid_out", [False, True])
def test_batches_held_by_the_consumer_keep_their_rows_after_later_blocks(tmp_path, laid_out):
    """A consumer (tf.data's from_generator, prefetch) may still read a block while later ones
    are gathered: no block may be refilled with another block's rows."""
    paths = [_table_file(tmp_path, "a", np.arange(0, 70)), _table_file(tmp_path, "b",
                                                                         np.arange(70, 100))]
    rows = SpilledRows(paths, str(tmp_path / "columns") if laid_out else None)
    for order in (epoch_order(100, True, 9, 0), np.arange(100)):
        held = list(rows.batches(order, [16] * 6 + [4], block_bytes=100))  # many blocks
        assert np.concatenate([b["id"] for b in held]).tolist() == order.tolist()
        for batch in held:
            assert batch["x"][:, 0].tolist() == batch["id"].astype(float).tolist()
            assert batch["tag"].tolist() == [f"t{i}" for i in batch["id"]]
