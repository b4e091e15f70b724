"""Spark-fed training visits each node's rows in a fresh random order every epoch.

A DataFrame ordered by label (as after ``orderBy`` or a ``groupBy``) must train as well as the
same rows in random order; orders are permutations of the node's whole share, reproducible from
a seed; ``shuffle=False`` keeps the fed order.
"""
from __future__ import annotations

import sys

import numpy as np
import pytest
from pyspark import cloudpickle

from tfspark import InputMode, TFCluster

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _epoch_orders(args, ctx):
    """Ids of this node's rows, epoch by epoch, for three feeds of the same data."""
    feed = ctx.get_data_feed()
    orders = {}
    for name, options in (("seed 5", {"seed": 5}), ("seed 5 again", {"seed": 5}),
                          ("fed order", {"shuffle": False})):
        dataset = feed.dataset(7, **options)
        orders[name] = [[int(i) for batch in dataset for i in batch["id"].numpy()]
                        for _epoch in range(2)]
    return orders


def test_every_epoch_is_a_fresh_reproducible_permutation_unless_shuffle_is_off(spark):
    sizes, nodes = (40, 25, 0, 31), 2
    df = spark.sparkContext.parallelize(range(sum(sizes)), 1).map(
        lambda i: (int(np.searchsorted(np.cumsum(sizes), i, side="right")), i)) \
        .partitionBy(len(sizes), lambda k: k).values().map(lambda i: (i,)).toDF("id long")
    cluster = TFCluster.run(spark.sparkContext, _epoch_orders, None, nodes,
                            input_mode=InputMode.SPARK)
    for _ in range(3):
        cluster.train(df)
    results = cluster.shutdown(timeout=300)

    partitions = df.rdd.glom().map(lambda rows: [r.id for r in rows]).collect()

    def dealt(p, rows, node):
        """tfspark deals a partition (of less than one chunk) out in one run per node, in node
        order, each as long as dealing row i to node (p + i) % nodes would make it."""
        counts = [sum(1 for i in range(len(rows)) if (p + i) % nodes == k)
                  for k in range(nodes)]
        return rows[sum(counts[:node]):sum(counts[:node + 1])]

    for node, orders in enumerate(results):
        fed = [row for p, rows in enumerate(partitions) for row in dealt(p, rows, node)]
        first, second = orders["seed 5"]
        assert sorted(first) == sorted(second) == sorted(fed)
        assert first != second and first != fed
        assert orders["seed 5 again"] == orders["seed 5"]
        assert orders["fed order"] == [fed, fed]


def _digits():
    from sklearn.datasets import load_digits
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    return (x[:1400], y[:1400]), (x[1400:], y[1400:])


def _model(tf):
    tf.keras.utils.set_random_seed(1)
    model = tf.keras.Sequential([tf.keras.Input((64,)),
                                 tf.keras.layers.Dense(32, activation="relu"),
                                 tf.keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=tf.keras.optimizers.SGD(0.1),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _mwms_accuracy_per_feed(args, ctx):
    import tensorflow as tf
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    feed = ctx.get_data_feed(seed=3)
    accuracy = []
    for _ in range(2):  # the random-order feed, then the ordered one
        dataset = feed.dataset(32, label="label")
        with strategy.scope():
            model = _model(tf)
        model.fit(dataset, epochs=feed.num_epochs, verbose=0)
        accuracy.append(model.evaluate(*args["test"], verbose=0)[1])
    return accuracy


def _pss_accuracy_per_feed(args, ctx):
    import tensorflow as tf
    strategy = ctx.parameter_server_strategy()
    feed = ctx.get_data_feed(seed=3)
    accuracy = []
    for _ in range(2):
        dataset_fn = feed.dataset_fn(32, label="label")
        with strategy.scope():
            model = _model(tf)
        model.fit(tf.keras.utils.experimental.DatasetCreator(dataset_fn),
                  epochs=feed.num_epochs, steps_per_epoch=feed.steps_per_epoch, verbose=0)
        local = _model(tf)  # evaluated on the chief, outside the strategy
        local.set_weights(model.get_weights())
        accuracy.append(local.evaluate(*args["test"], verbose=0)[1])
    return accuracy


@pytest.mark.parametrize("strategy", ["mwms", "pss"])
def test_a_dataframe_ordered_by_label_trains_as_well_as_a_random_one(spark, strategy):
    (x, y), test = _digits()
    df = spark.createDataFrame([(x[i].tolist(), int(y[i])) for i in range(len(x))],
                               "features array<float>, label long").repartition(4)
    ordered = df.orderBy("label")
    labels = [r.label for r in ordered.select("label").collect()]
    assert labels == sorted(labels)
    if strategy == "mwms":
        cluster = TFCluster.run(spark.sparkContext, _mwms_accuracy_per_feed, {"test": test}, 2,
                                input_mode=InputMode.SPARK)
    else:
        cluster = TFCluster.run(spark.sparkContext, _pss_accuracy_per_feed, {"test": test}, 3,
                                num_ps=1, master_node="chief", input_mode=InputMode.SPARK)
    cluster.train(df, num_epochs=5)
    cluster.train(ordered, num_epochs=5)
    results = cluster.shutdown(timeout=600)

    random_order, by_label = results[0] if strategy == "mwms" else results[1]
    assert random_order > 0.85
    assert by_label >= 0.95 * random_order, (random_order, by_label)
