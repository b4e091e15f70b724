"""``DataFeed.dataset`` on spilled files, without Spark: every element pairs the columns of one
row, across blocks, Arrow chunks, spill files and the end of a share, shuffled and in fed order.

The Spark-fed end-to-end checks are in ``tests/spark/test_feed_alignment.py``; this one runs the
real tf.data pipeline (from_generator -> prefetch -> rebatch -> map) on files written the way the
feed receiver writes them, at block sizes small enough to cross every boundary many times.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from tfspark._feed import spill
from tfspark._feed.arrow_columns import normalize_dataframe_batch
from tfspark._feed.datafeed import DataFeed


def _spill_file(path, ids, chunk_rows):
    """An Arrow IPC file like the receiver's: rows whose every column encodes the row's id."""
    batches = []
    for start in range(0, len(ids), chunk_rows):
        chunk = ids[start:start + chunk_rows]
        batches.append(normalize_dataframe_batch(pa.RecordBatch.from_pydict({
            "image": pa.array([[float(i), float(i % 10)] + [0.5] * 29 for i in chunk],
                              pa.list_(pa.float32())),
            "wide": pa.array([[-float(i)] * 3 for i in chunk], pa.list_(pa.float64())),
            "label": pa.array(chunk % 10, pa.int64()),
            "id": pa.array(chunk, pa.int64()),
            "small": pa.array((chunk % 1000).astype(np.int32), pa.int32()),
            "tag": pa.array([f"r{i}" for i in chunk])})))
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, batches[0].schema) as out:
        for batch in batches:
            out.write_batch(batch)
    return str(path)


def _feed(tmp_path, shares, chunk_rows=97):
    """A DataFeed for node 0 of ``len(shares)`` nodes, fed ``shares[0]`` (a list of files'
    row counts) as feed 1."""
    feed = DataFeed(0, seed=11)
    start = 0
    for partition, rows in enumerate(shares[0]):
        ids = np.arange(start, start + rows, dtype=np.int64)
        path = _spill_file(tmp_path / f"part-{partition}", ids, chunk_rows) if rows else None
        feed.add_train_file(1, partition, path, rows)  # an empty partition: no file
        start += rows
    schema = pa.ipc.open_file(pa.memory_map(str(tmp_path / "part-0"))).schema
    feed.end_feed(1, [sum(files) for files in shares], 2, schema.serialize().to_pybytes())
    return feed, start


def _check(element, label=True):
    features, labels = element if label else (element, element["label"])
    ids = features["id"].numpy()
    assert features["image"].numpy()[:, 0].tolist() == ids.astype(float).tolist()
    assert (features["image"].numpy()[:, 1] == ids % 10).all()
    assert (features["wide"].numpy() == -ids[:, None]).all()
    assert (labels.numpy() == ids % 10).all()
    assert (features["small"].numpy() == ids % 1000).all()
    assert [t.decode() for t in features["tag"].numpy()] == [f"r{i}" for i in ids]
    return ids.tolist()


@pytest.mark.parametrize("shuffle", [True, False])
def test_every_element_pairs_one_rows_columns_across_blocks_and_files(tmp_path, monkeypatch,
                                                                      shuffle):
    monkeypatch.setattr(spill, "BLOCK_BYTES", 4096)  # about 20 rows: dozens of blocks
    feed, rows = _feed(tmp_path, [[700, 0, 333, 250], [1290]])  # this share: the smaller one
    dataset = feed.dataset(16, label="label", shuffle=shuffle)
    epochs = [[i for element in dataset for i in _check(element)] for _ in range(2)]
    for seen in epochs:
        assert sorted(seen) == list(range(rows))
    assert (epochs[0] != epochs[1]) if shuffle else (epochs[0] == list(range(rows)))
    assert feed.steps_per_epoch == -(-1290 // 16)


def test_default_block_size_at_three_blocks_keeps_rows_together(tmp_path):
    width = 4096  # 16 KiB rows: the default 32 MiB block is 2,048 rows
    ids = np.arange(6500, dtype=np.int64)
    with pa.OSFile(str(tmp_path / "part-0"), "wb") as sink:
        schema = None
        for start in range(0, len(ids), 1000):
            chunk = ids[start:start + 1000]
            image = np.repeat(chunk[:, None].astype(np.float32), width, axis=1)
            offsets = pa.array(np.arange(len(chunk) + 1, dtype=np.int32) * width)
            batch = normalize_dataframe_batch(pa.RecordBatch.from_pydict({
                "image": pa.ListArray.from_arrays(offsets, pa.array(image.ravel())),
                "label": pa.array(chunk, pa.int64())}))
            if schema is None:
                schema = batch.schema
                out = pa.ipc.new_file(sink, schema)
            out.write_batch(batch)
        out.close()
    feed = DataFeed(0, seed=5)
    feed.add_train_file(1, 0, str(tmp_path / "part-0"), len(ids))
    feed.end_feed(1, [len(ids)], 1, schema.serialize().to_pybytes())
    assert len(ids) * width * 4 >= 3 * spill.BLOCK_BYTES
    seen = []
    for image, label in feed.dataset(32, label="label"):
        assert (image.numpy() == label.numpy()[:, None]).all()
        seen.extend(label.numpy().tolist())
    assert sorted(seen) == ids.tolist()
