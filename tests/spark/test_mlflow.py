"""MLflow tracking (``TFCluster.run(mlflow=...)``) against a real ``mlflow server`` (sqlite):
one run per job with its params and one value per epoch, a restart that keeps the run, the
logged model scoring through ``mlflow.pyfunc.spark_udf`` like ``tfspark.predict``, and a clear
error up front without MLflow."""
from __future__ import annotations

import os
import signal
import sys
import uuid

import numpy as np
import pytest
from pyspark import cloudpickle

from tfspark import InputMode, PreflightError, TFCluster, predict

cloudpickle.register_pickle_by_value(sys.modules[__name__])

def _rows(spark, n=512):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = x @ np.array([1.0, -2.0, 3.0, 0.5], "float32") + 1.0
    return spark.createDataFrame([(x[i].tolist(), float(y[i])) for i in range(n)],
                                 "x array<float>, y float")


def _fit(args, ctx):
    import tensorflow as tf
    from tfspark import export
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    feed = ctx.get_data_feed()

    class Die(tf.keras.callbacks.Callback):  # mid-epoch 3 of the first attempt, on worker:1
        def on_train_batch_end(self, batch, logs=None):
            if args.get("kill") and ctx.attempt == 0 and ctx.worker_num == 1 \
                    and self.model.optimizer.iterations.numpy() == 2 * feed.steps_per_epoch + 3:
                os.kill(os.getpid(), signal.SIGKILL)

    with strategy.scope():
        model = tf.keras.Sequential([tf.keras.Input((4,), name="x"), tf.keras.layers.Dense(1)])
        model.compile(optimizer=tf.keras.optimizers.SGD(0.05), loss="mse", metrics=["mae"])
    model.fit(feed.dataset(args["batch"], label="y"), epochs=feed.num_epochs,
              callbacks=[ctx.backup_and_restore(args["backup"]), Die()])
    return export.export_saved_model(model, args["export"], ctx)


def _only_run(experiment):
    import mlflow
    runs = mlflow.search_runs(experiment_names=[experiment], output_format="list")
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return runs[0]


def _history(run, key):
    import mlflow
    return [(m.step, m.value) for m in sorted(
        mlflow.tracking.MlflowClient().get_metric_history(run.info.run_id, key),
        key=lambda m: (m.step, m.timestamp))]


def test_one_run_per_job_across_a_restart_params_epochs_once_and_a_model_spark_udf_scores(
        spark, mlflow_server, tmp_path):
    """worker:1 dies mid-epoch 3 of 5: the restarted cluster logs into the same run, each epoch
    once (the cut one too), with the attempt that trained it; the model it logs scores like
    tfspark.predict."""
    import mlflow
    mlflow.set_tracking_uri(mlflow_server)
    experiment, export = f"job-{uuid.uuid4().hex[:6]}", str(tmp_path / "export")
    df = _rows(spark)
    cluster = TFCluster.run(spark, _fit, {"batch": 16, "export": export, "kill": True,
                                          "backup": str(tmp_path / "backup")}, 2,
                            input_mode=InputMode.SPARK, feed_mode="job",
                            mlflow={"tracking_uri": mlflow_server,
                                    "experiment_name": experiment})
    cluster.train(df, num_epochs=5)
    cluster.shutdown()
    assert len(cluster.attempts) == 2
    run = _only_run(experiment)
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert {k: params[k] for k in ("num_executors", "strategy", "workers", "input_mode",
                                   "feed_mode", "epochs", "batch_size_per_worker",
                                   "batch_size_global", "args.batch", "args.export")} == {
        "num_executors": "2", "strategy": "MultiWorkerMirroredStrategy", "workers": "2",
        "input_mode": "SPARK", "feed_mode": "job", "epochs": "5",
        "batch_size_per_worker": "16", "batch_size_global": "32", "args.batch": "16",
        "args.export": export}
    history = cluster.history
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5]
    for key in ("loss", "mae", "rows_per_sec"):  # one value per epoch, as cluster.history
        assert _history(run, key) == [(h["epoch"], pytest.approx(h[key], rel=1e-6))
                                      for h in history]
    assert [v for _, v in _history(run, "tfspark_attempt")] == [0, 0, 1, 1, 1]
    assert run.data.tags["tfspark_attempts"] == "2"
    assert "worker:1" in run.data.tags["tfspark_restart_causes"]
    assert run.data.tags["tfspark_model_version"] == f"{export}/1"

    udf = mlflow.pyfunc.spark_udf(spark, f"runs:/{run.info.run_id}/model",
                                  result_type="array<float>", env_manager="local")
    by_mlflow = [r.p for r in df.withColumn("p", udf("x")).orderBy("y").collect()]
    by_tfspark = predict(df, export, outputs={"dense": "p"}).orderBy("y").collect()
    np.testing.assert_allclose(by_mlflow, [r.p for r in by_tfspark], rtol=1e-6)


def test_tracking_without_mlflow_installed_fails_before_any_spark_job(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if it were not installed
    import tfspark
    monkeypatch.delitem(sys.modules, "tfspark.tracking", raising=False)
    monkeypatch.delattr(tfspark, "tracking", raising=False)
    with pytest.raises(PreflightError, match=r"needs MLflow on the driver: pip install "
                                             r"'tfspark\[mlflow\]'"):
        TFCluster.run(None, _fit, {}, 2, mlflow=True)  # no Spark at all: it never got there


def test_epochs_trained_again_are_logged_once_micro_batches_by_batch_id_and_an_active_run_is_kept(
        tmp_path):
    """JobTracking fed the chief's events as the driver's progress hands them on (a
    micro-batch's with its fit's logs), on a real sqlite store: an epoch trained
    again after resuming from an older backup is not logged twice; streaming logs each
    micro-batch at its batch id; a run the user started stays theirs (not ended)."""
    import mlflow

    from tfspark.tracking import JobTracking
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run() as users_run:
        tracking = JobTracking({"tracking_uri": uri})
        assert tracking.run_id == users_run.info.run_id and not tracking.started_here
        for epoch, loss in ((1, 0.9), (2, 0.5)):
            tracking.on_event({"event": "epoch_end", "epoch": epoch, "logs": {"loss": loss},
                               "rows": 100, "secs": 1.0})
        tracking.on_restart(1, "worker:1 failed")
        for epoch, loss in ((2, 0.45), (3, 0.3)):  # resumed from the backup of epoch 1
            tracking.on_event({"event": "epoch_end", "epoch": epoch, "logs": {"loss": loss},
                               "rows": 100, "secs": 1.0})
        tracking.finish(None)
        run = mlflow.get_run(users_run.info.run_id)
        assert run.info.status == "RUNNING"
    assert _history(run, "loss") == [(1, 0.9), (2, 0.5), (3, 0.3)]
    assert _history(run, "tfspark_attempt") == [(1, 0), (2, 0), (3, 1)]

    streaming = JobTracking({"tracking_uri": uri, "experiment_name": "stream"})
    streaming.streaming = True
    for batch_id, loss in ((4, 0.8), (6, 0.6)):
        streaming.on_event({"event": "epoch_end", "epoch": 1, "logs": {"loss": loss},
                            "secs": 1.0})
        streaming.on_event({"event": "stream_batch", "batch_id": batch_id, "rows": 50,
                            "trained": True, "secs": 0.5, "logs": {"loss": loss}})
    streaming.on_event({"event": "stream_batch", "batch_id": 6, "rows": 50, "trained": False})
    streaming.finish(None)
    run = mlflow.get_run(streaming.run_id)
    assert run.info.status == "FINISHED"
    assert _history(run, "loss") == [(4, 0.8), (6, 0.6)]
    assert _history(run, "rows_per_sec") == [(4, 100.0), (6, 100.0)]
