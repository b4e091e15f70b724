"""What the driver shows while TF trains: the chief's model.fit progress, and quiet TF logs."""
from __future__ import annotations

import re
import sys

from pyspark import cloudpickle

from tfspark import InputMode, TFCluster
from tfspark.tf_chatter import is_tf_chatter

cloudpickle.register_pickle_by_value(sys.modules[__name__])

ROWS, EPOCHS = 300, 2


def _fit_fed_rows(args, ctx):
    import time

    import tensorflow as tf

    class Slow(tf.keras.callbacks.Callback):  # long enough epochs for step lines
        def on_train_batch_end(self, batch, logs=None):
            time.sleep(0.1)

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(1)])
        model.compile(optimizer=tf.keras.optimizers.SGD(0.01), loss="mse", metrics=["mae"])
    history = model.fit(ctx.get_data_feed().dataset(10, label="y"), epochs=EPOCHS,
                        callbacks=[Slow()])
    return history.history["loss"]


def test_fit_progress_reaches_the_driver_as_epoch_lines_and_history(spark, capfd,
                                                                    monkeypatch):
    monkeypatch.setenv("TFSPARK_PROGRESS_LINE_SECS", "0")  # a line for every step event
    df = spark.createDataFrame([([float(i % 7), 1.0, -1.0], float(i % 3)) for i in range(ROWS)],
                               "x array<double>, y double").repartition(3)
    cluster = TFCluster.run(spark, _fit_fed_rows, None, 2, input_mode=InputMode.SPARK)
    cluster.train(df, num_epochs=EPOCHS)
    losses = cluster.shutdown(timeout=300)[0]

    captured = capfd.readouterr()
    output = captured.out + captured.err
    for epoch in range(1, EPOCHS + 1):  # not a TTY: one plain line per epoch, with rows/s
        assert re.search(rf"^tfspark: epoch {epoch}/{EPOCHS}: loss \d+\.\d+ - mae \d+\.\d+ - "
                         rf"\d+ rows/s - \d+\.\d s$", output, re.M), output
    # The history is what the chief's Keras logged, and every fed row was trained on.
    history = cluster.history
    assert [h["epoch"] for h in history] == list(range(1, EPOCHS + 1))
    assert [h["loss"] for h in history] == losses
    assert [h["rows"] for h in history] == [ROWS] * EPOCHS
    assert all(h["rows_per_sec"] > 0 and "mae" in h for h in history)
    # Step lines within an epoch carry the metric's value, not one summed over the workers
    steps = re.findall(rf"^tfspark: epoch {EPOCHS}/{EPOCHS} step \d+/15: loss ([\d.]+) - "
                       rf"mae [\d.]+ - \d+ rows/s - ETA \d\d:\d\d:\d\d$", output, re.M)
    assert steps, output
    assert abs(float(steps[-1]) - losses[-1]) < 0.25 * losses[-1], (steps, losses)
    # Progress shows once, on the driver: the workers' own Keras progress bars are off.
    assert "Epoch 1/" not in output and "====" not in output
    # Quiet by default: none of TF's C++ start-up lines (see the verbose test below)
    assert not [line for line in _node_lines(output) if is_tf_chatter(line)]


def _import_tf(args, ctx):
    import tensorflow as tf
    print(f"tf {tf.__version__} on {ctx.job_name}:{ctx.task_index}", flush=True)
    return True


def _node_lines(output: str):
    return [line.split("] ", 1)[1] for line in output.splitlines()
            if re.match(r"^\[(worker|chief):\d\] ", line)]


def test_tf_cpp_chatter_is_relayed_when_verbose(sc, capfd):
    assert TFCluster.run(sc, _import_tf, None, 2, verbose=True).shutdown(timeout=120) == [
        True, True]
    captured = capfd.readouterr()
    verbose = _node_lines(captured.out + captured.err)
    assert any(line.startswith("tf ") for line in verbose)  # the user's own print
    assert any(is_tf_chatter(line) for line in verbose), verbose
