"""Hostile and mistaken input on a real Spark cluster: a flood of strangers at the driver does
not stop a job, and misuse gets its own tfspark error, first line naming the problem, fast."""
from __future__ import annotations

import socket
import sys
import threading
import time

import pytest
from pyspark import cloudpickle

from tfspark import InputMode, PreflightError, TFCluster
from tfspark._feed.arrow_columns import FeedDataError

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def _fit_briefly(args, ctx):
    import tensorflow as tf
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    x = tf.random.stateless_normal((512, 4), seed=[1, ctx.worker_num])
    data = tf.data.Dataset.from_tensor_slices((x, tf.reduce_sum(x, 1))).batch(16).repeat()
    with strategy.scope():
        model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
    model.fit(data, epochs=3, steps_per_epoch=20, verbose=0)
    return [w.tolist() for w in model.get_weights()]


def test_200_strangers_at_the_driver_do_not_stop_a_running_job(sc):
    cluster = TFCluster.run(sc, _fit_briefly, None, 2)
    address = cluster._attempts[-1].server_address
    before = _rss_mib()
    strangers, stop = [], threading.Event()

    def flood():
        while not stop.is_set() and len(strangers) < 200:
            sock = socket.create_connection(address, timeout=10)
            sock.sendall((1 << 30).to_bytes(4, "big"))  # "a 1 GiB handshake frame follows"
            strangers.append(sock)

    flooder = threading.Thread(target=flood, daemon=True)
    flooder.start()
    try:
        weights = cluster.shutdown(timeout=300)
    finally:
        stop.set()
        flooder.join(30)
        for sock in strangers:
            sock.close()
    assert len(strangers) >= 50
    assert weights[0] == weights[1]  # the job finished, MWMS in lock step
    assert _rss_mib() - before < 64


def _count_rows(args, ctx):
    return sum(len(y) for _, y in ctx.get_data_feed().dataset(8, label="y").as_numpy_iterator())


def test_feeding_a_cluster_after_shutdown_fails_at_once(spark):
    cluster = TFCluster.run(spark, _count_rows, None, 2, input_mode=InputMode.SPARK)
    df = spark.range(0, 40, 1, 2).selectExpr("CAST(id AS double) AS x", "1.0D AS y")
    cluster.train(df)
    assert sum(cluster.shutdown(timeout=300)) == 40
    started = time.monotonic()
    with pytest.raises(PreflightError, match="has been shut down"):
        cluster.train(df)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("rows,problem", [
    ("CASE WHEN id = 7 THEN NULL ELSE CAST(id AS double) END AS x", "column 'x' has null"),
    ("CASE WHEN id = 7 THEN array(1.0D) ELSE array(1.0D, 2.0D) END AS x",
     "array column 'x' has rows of different lengths")])
def test_bad_rows_fail_the_feed_once_with_the_data_error(spark, rows, problem):
    cluster = TFCluster.run(spark, _count_rows, None, 2, input_mode=InputMode.SPARK,
                            feed_mode="job")
    df = spark.range(0, 40, 1, 2).selectExpr(rows, "1.0D AS y")
    started = time.monotonic()
    with pytest.raises(FeedDataError) as error:
        cluster.train(df)
    assert problem in str(error.value).splitlines()[0]
    assert time.monotonic() - started < 30  # no four Spark attempts of a deterministic error
    with pytest.raises(Exception):
        cluster.shutdown(timeout=60)
