"""Every fed row / every record of a shard is trained on exactly once per epoch.

A counting model adds, inside its train step, the number of rows and the sum of their ids to
global ``ON_READ``/``SUM`` variables (summed over all workers when read), so a row lost, split
away by a strategy, or duplicated changes what the test sees -- whatever the layers below say
they delivered.
"""
from __future__ import annotations

import sys

import numpy as np
import pytest
from pyspark import cloudpickle

from tfspark import InputMode, TFCluster

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _counting_model(tf):
    class Counting(tf.keras.Model):
        """Dense(1) on the id (times 0, so it trains but stays finite); counts what it trains."""

        def __init__(self):
            super().__init__()
            self.dense = tf.keras.layers.Dense(1)
            agg = dict(synchronization=tf.VariableSynchronization.ON_READ,
                       aggregation=tf.VariableAggregation.SUM, trainable=False)
            self.rows = tf.Variable(0.0, dtype=tf.float64, **agg)
            self.id_sum = tf.Variable(0.0, dtype=tf.float64, **agg)

        def call(self, x):
            return self.dense(tf.reshape(tf.cast(x, tf.float32), [-1, 1]) * 0.0)

        def count(self, ids):
            self.rows.assign_add(tf.cast(tf.size(ids), tf.float64))
            self.id_sum.assign_add(tf.reduce_sum(tf.cast(ids, tf.float64)))

        def train_step(self, data):
            self.count(data[0])
            return super().train_step(data)

    model = Counting()
    model.compile(optimizer=tf.keras.optimizers.SGD(0.01), loss="mse")
    return model


def _per_epoch_counts(tf, model):
    """A callback that records (rows, id sum) trained in each epoch."""
    class Record(tf.keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epochs, self.steps = [], []

        def on_epoch_begin(self, epoch, logs=None):
            model.rows.assign(0.0)
            model.id_sum.assign(0.0)

        def on_epoch_end(self, epoch, logs=None):
            self.epochs.append((float(model.rows.numpy()), float(model.id_sum.numpy())))
            self.steps.append(int(model.optimizer.iterations.numpy()) - sum(self.steps))

    return Record()


def _fit_fed_rows(args, ctx):
    import tensorflow as tf
    strategy = tf.distribute.MultiWorkerMirroredStrategy()   # as users write it
    feed = ctx.get_data_feed()
    dataset = feed.dataset(args["batch_size"], label="y")
    with strategy.scope():
        model = _counting_model(tf)
    record = _per_epoch_counts(tf, model)
    model.fit(dataset.map(lambda x, y: (x, y)), epochs=feed.num_epochs, verbose=0,
              callbacks=[record])
    return {"epochs": record.epochs, "steps": feed.steps_per_epoch,
            "weights": [w.tolist() for w in model.get_weights()]}


def _id_frame(spark, sizes):
    """A DataFrame (id double, y double) with partitions of the given sizes, ids 0..n-1."""
    total = sum(sizes)
    bounds = np.cumsum([0] + list(sizes))
    rdd = spark.sparkContext.parallelize(range(total), 1).map(
        lambda i: (int(np.searchsorted(bounds, i, side="right") - 1), (float(i), 1.0)))
    rdd = rdd.partitionBy(len(sizes), lambda k: k).values()
    df = rdd.toDF("id double, y double")
    assert df.rdd.glom().map(len).collect() == list(sizes)
    return df, total, float(total * (total - 1) / 2)


@pytest.mark.parametrize("nodes,sizes", [(2, (301, 0, 150)), (3, (97, 250, 1, 64))])
def test_model_fit_trains_every_fed_row_once_per_epoch(spark, nodes, sizes):
    df, rows, id_sum = _id_frame(spark, sizes)
    cluster = TFCluster.run(spark.sparkContext, _fit_fed_rows, {"batch_size": 16}, nodes,
                            input_mode=InputMode.SPARK)
    cluster.train(df, num_epochs=2)
    results = cluster.shutdown(timeout=300)

    for r in results:
        assert r["epochs"] == [(rows, id_sum)] * 2
        assert r["steps"] == results[0]["steps"]
        assert r["weights"] == results[0]["weights"]


def _custom_loops(args, ctx):
    import tensorflow as tf
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    feed = ctx.get_data_feed()
    with strategy.scope():
        model = _counting_model(tf)

    @tf.function
    def step(x):
        strategy.run(lambda v: model.count(v), args=(x,))

    counts = []
    dataset = feed.dataset(args["batch_size"], label="y")
    for distributed in (strategy.experimental_distribute_dataset(dataset),
                        strategy.distribute_datasets_from_function(lambda _: dataset)):
        for _ in range(feed.num_epochs):
            model.rows.assign(0.0)
            model.id_sum.assign(0.0)
            steps = 0
            for x, _y in distributed:
                step(x)
                steps += 1
            counts.append((float(model.rows.numpy()), float(model.id_sum.numpy()),
                           steps == feed.steps_per_epoch))
    return counts


def test_custom_training_loops_see_every_row_once_per_epoch(spark):
    df, rows, id_sum = _id_frame(spark, (120, 77, 3))
    cluster = TFCluster.run(spark.sparkContext, _custom_loops, {"batch_size": 8}, 2,
                            input_mode=InputMode.SPARK)
    cluster.train(df, num_epochs=2)
    for counts in cluster.shutdown(timeout=300):
        assert counts == [(rows, id_sum, True)] * 4  # 2 distribution APIs x 2 epochs


def _fit_from_next_batch(args, ctx):
    """TensorFlowOnSpark's recipe: a generator over next_batch, marked as this node's share."""
    import tensorflow as tf
    from tfspark.data import node_share
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    feed = ctx.get_data_feed()

    def rows():
        while not feed.should_stop():
            for row_id, y in feed.next_batch(10):
                yield row_id, y

    dataset = tf.data.Dataset.from_generator(rows, output_signature=(
        tf.TensorSpec([], tf.float64), tf.TensorSpec([], tf.float64))).batch(10)
    with strategy.scope():
        model = _counting_model(tf)
    record = _per_epoch_counts(tf, model)
    model.fit(node_share(dataset), epochs=1, verbose=0, callbacks=[record])
    return record.epochs


def test_next_batch_generator_trains_every_row_once_per_pass(sc):
    ids = np.arange(333, dtype=float)
    rdd = sc.parallelize([(float(i), 1.0) for i in ids], 4)
    cluster = TFCluster.run(sc, _fit_from_next_batch, None, 2, input_mode=InputMode.SPARK)
    cluster.train(rdd, num_epochs=2)
    for epochs in cluster.shutdown(timeout=300):
        assert epochs == [(2 * 333.0, 2 * float(ids.sum()))]  # both passes in one fit epoch


def _fit_tfrecords(args, ctx):
    import tensorflow as tf
    from tfspark import data
    features = {"id": tf.io.FixedLenFeature([], tf.float32),
                "y": tf.io.FixedLenFeature([], tf.float32)}
    records = data.tfrecord_dataset(args["path"], features, ctx=ctx)
    dataset = records.map(lambda r: (r["id"], r["y"])).shuffle(64).batch(args["batch_size"])
    strategy = tf.distribute.MultiWorkerMirroredStrategy()  # after the dataset, as users may
    with strategy.scope():
        model = _counting_model(tf)
    record = _per_epoch_counts(tf, model)
    model.fit(dataset, epochs=2, verbose=0, callbacks=[record])
    return {"epochs": record.epochs, "steps": record.steps}


def test_model_fit_trains_every_record_of_every_shard_once_per_epoch(spark, tmp_path):
    from tfspark import tfrecord
    df, rows, id_sum = _id_frame(spark, (50, 210, 7, 90, 31))  # shards of 88 and 300 records
    path = str(tmp_path / "ids")
    tfrecord.write(df.selectExpr("cast(id as float) id", "cast(y as float) y"), path)
    cluster = TFCluster.run(spark.sparkContext, _fit_tfrecords, {"path": path, "batch_size": 16},
                            2)
    for result in cluster.shutdown(timeout=300):
        assert result["epochs"] == [(rows, id_sum)] * 2
        # per-worker batches of 16: ceil(300 / 16) steps (the first epoch may add an empty one
        # while TF learns the dataset's length)
        assert result["steps"][1] == 19


def _fit_with_validation(args, ctx):
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    feed = ctx.get_data_feed()
    train = feed.dataset(8, label="y")
    validation = feed.validation_dataset(8, label="y")
    with strategy.scope():
        model = tf.keras.Sequential([tf.keras.Input((2,), name="x"), tf.keras.layers.Dense(1)])
        model.compile(optimizer=tf.keras.optimizers.SGD(0.01), loss="mse")
    history = model.fit(train, validation_data=validation, epochs=feed.num_epochs, verbose=0)
    return {"history": history.history, "weights": [w.tolist() for w in model.get_weights()]}


def test_validation_rows_are_fed_apart_and_val_loss_covers_exactly_them(spark):
    def rows(n, offset):  # y = x0 - x1 (+ an offset for the validation rows)
        return [([float(i % 7), float(i % 5)], float(i % 7 - i % 5 + offset)) for i in range(n)]

    train = spark.createDataFrame(rows(400, 0.0), "x array<float>, y float").repartition(3)
    validation = spark.createDataFrame(rows(91, 3.0), "x array<float>, y float").repartition(2)
    cluster = TFCluster.run(spark, _fit_with_validation, None, 2, input_mode=InputMode.SPARK)
    cluster.train(train, num_epochs=2, validation_data=validation)
    chief = cluster.shutdown(timeout=300)[0]

    history = chief["history"]
    assert len(history["val_loss"]) == 2 and history["val_loss"] != history["loss"]
    # the last epoch's val_loss is the MSE of the final weights over all 91 validation rows
    kernel, bias = np.array(chief["weights"][0]), np.array(chief["weights"][1])
    x = np.array([r[0] for r in rows(91, 3.0)], "float64")
    y = np.array([r[1] for r in rows(91, 3.0)], "float64")
    expected = float(np.mean((x @ kernel[:, 0] + bias[0] - y) ** 2))
    assert history["val_loss"][-1] == pytest.approx(expected, rel=1e-4)
    assert [h["val_loss"] for h in cluster.history] == history["val_loss"]  # progress has it


def _validation_without_data(args, ctx):
    feed = ctx.get_data_feed()
    feed.dataset(8, label="y")
    try:
        feed.validation_dataset(8, label="y")
    except Exception as e:  # noqa: BLE001 - the message is what the test checks
        return str(e)
    return "no error"


def test_validation_dataset_without_validation_data_says_so(spark):
    df = spark.createDataFrame([([1.0], 1.0)] * 20, "x array<float>, y float")
    cluster = TFCluster.run(spark, _validation_without_data, None, 2, input_mode=InputMode.SPARK)
    cluster.train(df)
    assert all("pass validation_data= to cluster.train" in message
               for message in cluster.shutdown(timeout=300))
