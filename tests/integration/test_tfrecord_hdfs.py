"""tfspark.tfrecord and tfspark.data against a real HDFS (the `hdfs_cluster` fixture)."""
from __future__ import annotations

import os
import sys
import uuid

import pytest

from tfspark import fs, tfrecord
from tfspark.data import tfrecord_dataset


@pytest.fixture(scope="module")
def hdfs_env(hdfs_cluster):
    saved = {k: os.environ.get(k) for k in hdfs_cluster.env()}
    os.environ.update(hdfs_cluster.env())
    yield hdfs_cluster
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def test_round_trip_via_hdfs(spark, hdfs_env):
    base = f"{hdfs_env.default_fs}/tmp/tfrecord-{uuid.uuid4().hex[:8]}"
    df = spark.range(1000).selectExpr("id", "id % 3 as k", "cast(id as float) / 4 as x",
                                      "array(cast(id as double), 2.0) as v",
                                      "concat('n', cast(id as string)) as name")
    written = tfrecord.write(df.repartition(3), base + "/data", compression="gzip",
                             partition_by="k")
    assert len(written) == 9 and all(w.startswith(base + "/data/k=") for w in written)
    names = fs.listdir(base + "/data")
    assert names == ["_SUCCESS", "k=0", "k=1", "k=2"]
    assert fs.listdir(base) == ["data"]  # the staging directory was renamed into place
    back = tfrecord.read(spark, base + "/data")
    rows = sorted(back.collect())
    assert [r.id for r in rows] == list(range(1000))
    assert rows[7].k == 1 and rows[7].x == 1.75 and rows[7].v == [7.0, 2.0]
    assert rows[7].name == "n7"
    tfrecord.write(spark.range(5), base + "/data", mode="overwrite")
    assert sorted(r.id for r in tfrecord.read(spark, base + "/data").collect()) == list(range(5))
    assert fs.listdir(base) == ["data"]


def test_tfrecord_dataset_two_shards_from_hdfs(spark, hdfs_env, tmp_path):
    import tensorflow as tf
    path = f"{hdfs_env.default_fs}/tmp/tfrecord-ds-{uuid.uuid4().hex[:8]}"
    tfrecord.write(spark.range(0, 60, numPartitions=4).selectExpr("id", "id * 2 as twice"),
                   path)
    features = {"id": tf.io.FixedLenFeature([], tf.int64),
                "twice": tf.io.FixedLenFeature([], tf.int64)}
    seen = []
    for shard in range(2):
        local = tmp_path / f"shard{shard}"
        local.mkdir()
        ds = tfrecord_dataset(path, features, batch_size=8, shard_index=shard, num_shards=2,
                              local_dir=str(local))
        ids = []
        for batch in ds:
            assert (batch["twice"].numpy() == 2 * batch["id"].numpy()).all()
            ids += batch["id"].numpy().tolist()
            # at most 1 + prefetch_files downloaded files on disk at once
            on_disk = [f for _, _, files in os.walk(local) for f in files]
            assert len(on_disk) <= 2
        assert [f for _, _, files in os.walk(local) for f in files] == []  # deleted when read
        seen.append(ids)
    assert len(seen[0]) == len(seen[1]) == 30 and not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == list(range(60))
    with pytest.raises(tfrecord.TFRecordError, match="4 TFRecord file"):
        tfrecord_dataset(path, features, shard_index=0, num_shards=5)


def _train_on_hdfs_tfrecords(args, ctx):
    import numpy as np
    import tensorflow as tf
    from tfspark.data import tfrecord_dataset

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    features = {"x": tf.io.FixedLenFeature([4], tf.float32),
                "y": tf.io.FixedLenFeature([], tf.float32)}
    # one pass over this worker's shard: which rows does it read?
    ids = [int(i) for batch in tfrecord_dataset(args["path"], {"id": tf.io.FixedLenFeature(
        [], tf.int64)}, batch_size=64, ctx=ctx) for i in batch["id"].numpy()]
    dataset = tfrecord_dataset(args["path"], features, batch_size=32, ctx=ctx).map(
        lambda f: (f["x"], f["y"])).repeat()
    with strategy.scope():
        model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(1)])
        model.compile(optimizer=tf.keras.optimizers.SGD(0.1), loss="mse")
    history = model.fit(dataset, epochs=6, steps_per_epoch=16, verbose=2)
    return {"ids": ids, "loss": history.history["loss"],
            "weights": [np.asarray(w).tolist() for w in model.get_weights()]}


def test_mwms_training_reads_tfrecords_from_hdfs(spark, hdfs_env):
    from pyspark import cloudpickle
    from tfspark import TFCluster
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    path = f"{hdfs_env.default_fs}/tmp/tfrecord-train-{uuid.uuid4().hex[:8]}"
    df = spark.range(0, 1024, numPartitions=4).selectExpr(
        "id", "array(rand(1), rand(2), rand(3), rand(4)) as x")
    df = df.selectExpr("id", "transform(x, v -> cast(v as float)) as x",
                       "cast(x[0] - 2 * x[1] + 3 * x[2] + 0.5 * x[3] + 1 as float) as y")
    tfrecord.write(df, path)

    first, second = TFCluster.run(spark.sparkContext, _train_on_hdfs_tfrecords,
                                  {"path": path}, 2).shutdown(timeout=300)
    assert not set(first["ids"]) & set(second["ids"])  # each file is read by one worker
    assert sorted(first["ids"] + second["ids"]) == list(range(1024))
    assert first["weights"] == second["weights"]
    assert first["loss"][-1] < first["loss"][0] / 3
