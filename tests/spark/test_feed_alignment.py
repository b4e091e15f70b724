"""Every Spark-fed element pairs the columns of one row, at sizes that cross every boundary.

Each row's columns all encode its id (``image[0] = id``, ``image[1] = id % 10``, ``wide =
-id``, ``label = id % 10``, ``small = id % 1000``, ``tag = "r<id>"``: float32, float64, int64,
int32 and string columns of widths 9, 3 and 1), and the nodes check every element they are
given, in every epoch, shuffled and in fed order. The data crosses every boundary the feed has:
Arrow batches (``maxRecordsPerBatch``) and the feed's chunks, partitions of very different sizes
(and an empty one) dealt over two nodes, the spill files, the gather blocks (a small
``tfspark._feed.spill.BLOCK_BYTES`` set on the nodes, and once the default at >= 3 blocks a node), the
laid-out columns of the shuffled feed, ``next_batch``'s blocks, and the end of each share.

A 1,400-row test once passed while 60,000 rows trained on the wrong labels: one 32 MiB block
held a whole share then, and the second block overwrote the first while TF still read it.
"""
from __future__ import annotations

import contextlib
import sys

import numpy as np
import pytest
from pyspark import cloudpickle

from tfspark import InputMode, TFCluster

cloudpickle.register_pickle_by_value(sys.modules[__name__])

SIZES = (7000, 0, 2600, 3501)  # rows per partition: several chunks of 4,096 and Arrow batches
SMALL_BLOCK = 8192  # bytes: about 50 of these rows, so a node's share spans ~100 blocks


def _frame(spark, sizes, first_id=0):
    """Partitions of ``sizes`` rows with ids ``first_id``.. in order, every column encoding the
    row's id (see the module docstring)."""
    from pyspark.sql import functions as F
    bounds = np.cumsum([0] + list(sizes))
    ids = spark.sparkContext.parallelize(range(sum(sizes)), 1).map(
        lambda i: (int(np.searchsorted(bounds, i, side="right") - 1), i + first_id))
    ids = ids.partitionBy(len(sizes), lambda k: k).values().map(lambda i: (i,)).toDF("id long")
    image = [F.col("id"), F.col("id") % 10] + [F.lit(0.5)] * 7
    df = ids.select(
        F.array(*image).cast("array<float>").alias("image"),
        F.array(*[-F.col("id")] * 3).cast("array<double>").alias("wide"),
        (F.col("id") % 10).alias("label"), "id",
        (F.col("id") % 1000).cast("int").alias("small"),
        F.concat(F.lit("r"), F.col("id").cast("string")).alias("tag"))
    assert df.rdd.glom().map(len).collect() == list(sizes)
    return df


@contextlib.contextmanager
def _arrow_batches_of(spark, rows):
    key = "spark.sql.execution.arrow.maxRecordsPerBatch"
    before = spark.conf.get(key)
    spark.conf.set(key, str(rows))
    try:
        yield
    finally:
        spark.conf.set(key, before)


def _mismatches(columns, labels=None):
    """Rows of a batch (numpy columns) whose columns do not all encode the same id."""
    ids = np.asarray(columns["id"])
    labels = np.asarray(columns["label"] if labels is None else labels)
    image, wide = np.asarray(columns["image"]), np.asarray(columns["wide"])
    tags = [t.decode() if isinstance(t, bytes) else t for t in columns["tag"]]
    ok = ((image[:, 0] == ids) & (image[:, 1] == ids % 10) & (wide == -ids[:, None]).all(1)
          & (labels == ids % 10) & (np.asarray(columns["small"]) == ids % 1000)
          & (np.array(tags) == np.array([f"r{i}" for i in ids])))
    return int((~ok).sum()), ids.tolist()


def _epochs(dataset, epochs, labelled):
    """(mismatched rows, ids in order) of each pass over ``dataset``."""
    passes = []
    for _ in range(epochs):
        bad, seen = 0, []
        for element in dataset:
            features, labels = element if labelled else (element, None)
            columns = {k: v.numpy() for k, v in features.items()}
            wrong, ids = _mismatches(columns, None if labels is None else labels.numpy())
            bad, seen = bad + wrong, seen + ids
        passes.append((bad, seen))
    return passes


def _check_datasets(args, ctx):
    import tfspark._feed.spill
    tfspark._feed.spill.BLOCK_BYTES = args["block_bytes"]
    feed = ctx.get_data_feed(seed=13)
    shuffled = _epochs(feed.dataset(16, label="label"), 2, labelled=True)
    steps = feed.steps_per_epoch
    validation = _epochs(feed.validation_dataset(16, label="label"), 2, labelled=True)
    fed_order = _epochs(feed.dataset(16, shuffle=False), 2, labelled=False)
    return {"shuffled": shuffled, "validation": validation, "fed order": fed_order,
            "steps": steps}


def test_tf_data_feeds_pair_every_rows_columns_shuffled_and_in_fed_order(spark):
    train, validation = _frame(spark, SIZES), _frame(spark, (900, 1333), first_id=10 ** 6)
    cluster = TFCluster.run(spark.sparkContext, _check_datasets,
                            {"block_bytes": SMALL_BLOCK}, 2, input_mode=InputMode.SPARK,
                            feed_mode="job")
    with _arrow_batches_of(spark, 1500):
        cluster.train(train, num_epochs=2, validation_data=validation)
        cluster.train(train, num_epochs=2)
    nodes = cluster.shutdown(timeout=600)

    expected = {"shuffled": sum(SIZES), "fed order": sum(SIZES), "validation": 2233}
    for name, rows in expected.items():
        for epoch in range(2):
            assert [node[name][epoch][0] for node in nodes] == [0, 0], (name, epoch)
            ids = [i for node in nodes for i in node[name][epoch][1]]
            assert len(ids) == len(set(ids)) == rows, (name, epoch)  # each row once
    for node in nodes:
        assert node["shuffled"][0][1] != node["shuffled"][1][1]  # a fresh order each epoch
        assert node["fed order"][0][1] == node["fed order"][1][1] == sorted(
            node["fed order"][0][1])  # the partitions' own order (ids ascend in them)
    assert nodes[0]["steps"] == -(-max(len(n["shuffled"][0][1]) for n in nodes) // 16)


def _fit_counting_mismatches(args, ctx):
    """model.fit under MWMS on the default block size; the train step itself counts the rows
    it trains on and those whose image does not encode their label."""
    import tensorflow as tf
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    feed = ctx.get_data_feed()
    dataset = feed.dataset(32, label="label")

    with strategy.scope():
        class Checking(tf.keras.Model):
            def __init__(self):
                super().__init__()
                self.dense = tf.keras.layers.Dense(1)
                agg = dict(synchronization=tf.VariableSynchronization.ON_READ,
                           aggregation=tf.VariableAggregation.SUM, trainable=False)
                self.rows = tf.Variable(0.0, dtype=tf.float64, **agg)
                self.wrong = tf.Variable(0.0, dtype=tf.float64, **agg)

            def call(self, x):
                return self.dense(tf.reduce_mean(x, axis=1, keepdims=True) * 0.0)

            def train_step(self, data):
                image, label = data
                equal = tf.reduce_all(tf.equal(image, tf.cast(label, tf.float32)[:, None]), 1)
                self.rows.assign_add(tf.cast(tf.size(label), tf.float64))
                self.wrong.assign_add(tf.reduce_sum(tf.cast(~equal, tf.float64)))
                return super().train_step(data)

        model = Checking()
        model.compile(optimizer=tf.keras.optimizers.SGD(0.01), loss="mse")
    model.fit(dataset, epochs=feed.num_epochs, verbose=0)
    return {"rows": float(model.rows.numpy()), "wrong": float(model.wrong.numpy()),
            "share": feed.rows_per_node[feed.node_index]}


def test_model_fit_trains_on_matching_rows_at_the_default_block_size_fed_in_the_stage(spark):
    """Rows of 4,096 float32 (16 KiB): a node's 6,500 rows are 3.2 default 32 MiB blocks."""
    from pyspark.sql import functions as F

    import tfspark._feed.spill
    width, rows = 4096, 13000
    df = spark.range(rows, numPartitions=3).select(
        F.array_repeat(F.col("id").cast("float"), width).alias("image"),
        F.col("id").alias("label"))
    cluster = TFCluster.run(spark.sparkContext, _fit_counting_mismatches, {}, 2,
                            input_mode=InputMode.SPARK, feed_mode="stage")
    cluster.train(df, num_epochs=2)
    nodes = cluster.shutdown(timeout=600)

    assert min(n["share"] for n in nodes) * width * 4 >= 3 * tfspark._feed.spill.BLOCK_BYTES
    for node in nodes:  # ON_READ SUM: every node reads the cluster's totals
        assert node == {"rows": 2.0 * rows, "wrong": 0.0, "share": node["share"]}


def _next_batches(args, ctx):
    """TensorFlowOnSpark's API: next_batch until should_stop, training or inference."""
    feed = ctx.get_data_feed(train_mode=args["mode"] != "inference",
                             shuffle=args["mode"] == "shuffled", seed=4)
    bad, seen = 0, []
    while not feed.should_stop():
        rows = feed.next_batch(300)
        if not rows:
            continue
        columns = {name: [r[i] for r in rows] for i, name in enumerate(args["columns"])}
        columns["image"], columns["wide"] = np.stack(columns["image"]), np.stack(columns["wide"])
        wrong, ids = _mismatches(columns)
        bad, seen = bad + wrong, seen + ids
        if args["mode"] == "inference":
            feed.batch_results([f"{r[3]}:{r[0][0]:.0f}:{r[5]}" for r in rows])
    return {"wrong": bad, "ids": seen}


@pytest.mark.parametrize("mode", ["shuffled", "fed order", "inference"])
def test_next_batch_pairs_every_rows_columns(spark, mode):
    df = _frame(spark, SIZES)
    cluster = TFCluster.run(spark.sparkContext, _next_batches,
                            {"mode": mode, "columns": df.columns}, 2,
                            input_mode=InputMode.SPARK, feed_mode="job")
    with _arrow_batches_of(spark, 1500):
        if mode == "inference":
            results = cluster.inference(df).collect()
        else:
            cluster.train(df, num_epochs=2)
    nodes = cluster.shutdown(timeout=600)

    assert [n["wrong"] for n in nodes] == [0, 0]
    seen = sorted(i for n in nodes for i in n["ids"])
    epochs = 1 if mode == "inference" else 2
    assert seen == sorted(list(range(sum(SIZES))) * epochs)
    if mode == "inference":  # every result goes back to its own row, in the data's order
        assert results == [f"{i}:{i}:r{i}" for i in range(sum(SIZES))]


def _pss_batches(args, ctx):
    import tensorflow as tf
    strategy = ctx.parameter_server_strategy()
    feed = ctx.get_data_feed(seed=2)
    dataset_fn = feed.dataset_fn(64, label="label")
    coordinator = tf.distribute.coordinator.ClusterCoordinator(strategy)
    batches = iter(coordinator.create_per_worker_dataset(
        lambda: dataset_fn(tf.distribute.InputContext())))

    @tf.function
    def check(iterator):
        x, label = next(iterator)
        ids = x["id"]
        ok = tf.reduce_all(tf.stack([
            tf.equal(x["image"][:, 0], tf.cast(ids, tf.float32)),
            tf.equal(x["image"][:, 1], tf.cast(ids % 10, tf.float32)),
            tf.reduce_all(tf.equal(x["wide"], -tf.cast(ids, tf.float64)[:, None]), 1),
            tf.equal(label, ids % 10),
            tf.equal(tf.cast(x["small"], tf.int64), ids % 1000),
            tf.equal(x["tag"], tf.strings.join(["r", tf.strings.as_string(ids)]))]), 0)
        return tf.reduce_sum(tf.cast(~ok, tf.int64)), ids

    results = [coordinator.schedule(check, args=(batches,))
               for _ in range(2 * feed.steps_per_epoch)]
    coordinator.join()
    fetched = [r.fetch() for r in results]
    return {"wrong": int(sum(w for w, _ in fetched)),
            "ids": sorted({int(i) for _, ids in fetched for i in ids})}


def test_parameter_server_dataset_fn_pairs_every_rows_columns(spark):
    df = _frame(spark, SIZES)
    cluster = TFCluster.run(spark.sparkContext, _pss_batches, {}, 3, num_ps=1,
                            master_node="chief", input_mode=InputMode.SPARK, feed_mode="job")
    with _arrow_batches_of(spark, 1500):
        cluster.train(df, num_epochs=2)
    chief = cluster.shutdown(timeout=600)[1]

    assert chief["wrong"] == 0
    # two passes' worth of steps on whichever worker is free: most rows, none invented
    assert set(chief["ids"]) <= set(range(sum(SIZES))) and len(chief["ids"]) > sum(SIZES) // 2
