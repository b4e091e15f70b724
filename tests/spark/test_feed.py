"""InputMode.SPARK on the real standalone cluster: RDDs/DataFrames fed into tf.data."""
from __future__ import annotations

import sys
import time

import numpy as np
import pytest
from pyspark import cloudpickle

from tfspark import InputMode, TFCluster

cloudpickle.register_pickle_by_value(sys.modules[__name__])

WEIGHTS = np.array([2.0, -1.0, 0.5], "float32")


def _rows(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype("float32")
    return x, (x @ WEIGHTS + 0.25).astype("float32")


def _fit_from_feed(args, ctx):
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    feed = ctx.get_data_feed()
    dataset = feed.dataset(batch_size=16, label=args.get("label"))
    with strategy.scope():
        model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(1)])
        model.compile(optimizer=tf.keras.optimizers.SGD(0.1), loss="mse")
    history = model.fit(dataset, epochs=feed.num_epochs, verbose=2)
    return {"loss": history.history["loss"], "steps": feed.steps_per_epoch,
            "weights": [w.tolist() for w in model.get_weights()]}


def test_dataframe_with_uneven_partitions_trains_mwms(spark):
    x, y = _rows(300, seed=1)
    pdf_rows = [(x[i].tolist(), float(y[i])) for i in range(len(x))]
    df = spark.createDataFrame(pdf_rows, "features array<float>, label float")
    # three partitions of 200, 0 and 100 rows
    df = df.rdd.zipWithIndex().map(lambda r: (0 if r[1] < 200 else 2, r[0])) \
        .partitionBy(3, lambda k: k).values().toDF(df.schema)
    assert df.rdd.glom().map(len).collect() == [200, 0, 100]

    cluster = TFCluster.run(spark.sparkContext, _fit_from_feed, {"label": "label"}, 2,
                            input_mode=InputMode.SPARK)
    cluster.train(df, num_epochs=4)
    first, second = cluster.shutdown(timeout=300)

    assert first["weights"] == second["weights"]
    assert first["steps"] == second["steps"]
    assert first["loss"][-1] < 0.05 < first["loss"][0]


def test_rdd_of_tuples_three_epochs_computes_the_source_once(sc):
    x, y = _rows(256, seed=2)
    computed = sc.accumulator(0)

    def make_rows(partition):
        for row in partition:
            computed.add(1)
            yield row

    rdd = sc.parallelize([(x[i], y[i]) for i in range(len(x))], 4).mapPartitions(make_rows)
    cluster = TFCluster.run(sc, _fit_from_feed, {}, 2, input_mode=InputMode.SPARK)
    cluster.train(rdd, num_epochs=3)
    first, second = cluster.shutdown(timeout=300)

    assert computed.value == 256  # each row computed once for 3 epochs
    assert len(first["loss"]) == 3
    assert first["weights"] == second["weights"]
    assert first["loss"][-1] < first["loss"][0]


def _predict_with_fixed_model(args, ctx):
    import numpy as np
    import tensorflow as tf

    model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(
        1, kernel_initializer=tf.keras.initializers.Constant(args["kernel"]),
        bias_initializer=tf.keras.initializers.Constant(0.5))])
    feed = ctx.get_data_feed(train_mode=False)
    while not feed.should_stop():
        rows = feed.next_batch(7)
        if rows:
            features = np.stack([r[0] for r in rows])
            feed.batch_results(model.predict(features, verbose=0)[:, 0].tolist())


def test_inference_returns_one_prediction_per_row_in_order(sc):
    import tensorflow as tf

    x, _ = _rows(101, seed=3)
    rdd = sc.parallelize([(x[i],) for i in range(len(x))], 5)
    kernel = [[1.0], [2.0], [-3.0]]
    cluster = TFCluster.run(sc, _predict_with_fixed_model, {"kernel": kernel}, 2,
                            input_mode=InputMode.SPARK)
    predictions = cluster.inference(rdd).collect()
    cluster.shutdown(timeout=120)

    local = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(
        1, kernel_initializer=tf.keras.initializers.Constant(kernel),
        bias_initializer=tf.keras.initializers.Constant(0.5))])
    expected = local.predict(x, verbose=0)[:, 0]
    assert len(predictions) == len(x)
    np.testing.assert_allclose(predictions, expected, rtol=1e-5, atol=1e-5)


def _tfos_style_main(args, ctx):
    """A TensorFlowOnSpark InputMode.SPARK main_fun: next_batch until should_stop."""
    import numpy as np
    import tensorflow as tf

    feed = ctx.get_data_feed(train_mode=True)
    weights = tf.Variable(tf.zeros((3, 1)))
    optimizer = tf.keras.optimizers.SGD(0.05)
    seen, losses = 0, []
    while not feed.should_stop():
        batch = feed.next_batch(args["batch_size"])
        if not batch:
            continue
        seen += len(batch)
        features = np.stack([row[0] for row in batch])
        labels = np.array([row[1] for row in batch], "float32")[:, None]
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((features @ weights - labels) ** 2)
        optimizer.apply_gradients([(tape.gradient(loss, weights), weights)])
        losses.append(float(loss))
    return {"seen": seen, "first": float(np.mean(losses[:3])), "last": float(np.mean(losses[-3:]))}


def test_tensorflowonspark_style_main_fun_trains_unchanged(sc):
    x, y = _rows(400, seed=4)
    rdd = sc.parallelize([(x[i], (x[i] @ WEIGHTS)) for i in range(len(x))], 4)
    cluster = TFCluster.run(sc, _tfos_style_main, {"batch_size": 20}, 2,
                            input_mode=InputMode.SPARK)
    cluster.train(rdd, num_epochs=2)
    results = cluster.shutdown(timeout=300)

    assert sum(r["seen"] for r in results) == 800  # 400 rows x 2 epochs, each row once per epoch
    for r in results:
        assert r["last"] < r["first"] / 4


def test_feeding_needs_input_mode_spark(sc):
    cluster = TFCluster.run(sc, lambda args, ctx: None, None, 2)
    with pytest.raises(Exception, match="input_mode=InputMode.SPARK"):
        cluster.train(sc.parallelize([1, 2]))
    cluster.shutdown(timeout=60)


def _die_on_worker_1(args, ctx):
    import os
    import time
    feed = ctx.get_data_feed()
    if ctx.worker_num == 1:
        os._exit(7)
    time.sleep(600)
    return feed


def test_node_dying_while_fed_ends_train_with_its_name(sc):
    import time
    from tfspark import NodeError
    rdd = sc.parallelize([(float(i), float(i)) for i in range(1000)], 4)
    started = time.monotonic()
    cluster = TFCluster.run(sc, _die_on_worker_1, None, 2, input_mode=InputMode.SPARK)
    with pytest.raises(NodeError, match="worker:1 .* exited with code 7"):
        cluster.train(rdd)
        cluster.shutdown(timeout=120)  # if train() returned before the node died
    assert time.monotonic() - started < 90


def _never_answers(args, ctx):
    feed = ctx.get_data_feed(train_mode=False)
    while not feed.should_stop():
        feed.next_batch(10)  # takes rows, never gives results


def test_stalled_inference_fails_after_feed_timeout(sc):
    cluster = TFCluster.run(sc, _never_answers, None, 2, input_mode=InputMode.SPARK)
    rdd = sc.parallelize([(float(i),) for i in range(20)], 2)
    with pytest.raises(Exception, match="did not acknowledge its data within feed_timeout=3"):
        cluster.inference(rdd, feed_timeout=3).collect()
    assert cluster.shutdown(timeout=60) == [None, None]  # no more data: the nodes' loops end


def _returns_at_once(args, ctx):
    return ctx.worker_num


@pytest.mark.parametrize("feed_mode", ["job", "stage"])
def test_shutdown_of_a_spark_fed_cluster_that_was_never_fed_is_prompt(sc, feed_mode):
    cluster = TFCluster.run(sc, _returns_at_once, None, 2, input_mode=InputMode.SPARK,
                            feed_mode=feed_mode)
    started = time.monotonic()
    assert cluster.shutdown(timeout=120) == [0, 1]
    # as long as any shutdown (it waited 30 s per node for receivers that had gone)
    assert time.monotonic() - started < 10
