"""TFCluster on a real Spark standalone cluster (2 workers x 2 cores = 4 task slots)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from pyspark import cloudpickle

from tfspark import NodeError, PreflightError, ReservationError, TFCluster
from tfspark.control import ChannelError, ControlClient

# The executors cannot import this test module: ship its functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _regression_main(args, ctx):
    """Two-worker MWMS model.fit on y = x.w + 1; returns the loss history and final weights."""
    import numpy as np
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    rng = np.random.default_rng(ctx.worker_num)  # each worker has its own data shard
    x = rng.normal(size=(512, 4)).astype("float32")
    y = x @ np.array([1.0, -2.0, 3.0, 0.5], "float32") + 1.0
    with strategy.scope():
        model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(1)])
        model.compile(optimizer=tf.keras.optimizers.SGD(0.05), loss="mse")
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(32).repeat()
    history = model.fit(dataset, epochs=4, steps_per_epoch=8, verbose=2)
    return {"loss": history.history["loss"], "keras": tf.keras.__name__,
            "weights": [w.tolist() for w in model.get_weights()]}


def test_mwms_two_workers_end_with_identical_weights(sc):
    cluster = TFCluster.run(sc, _regression_main, None, 2)
    results = cluster.shutdown(timeout=300)

    assert len(results) == 2
    first, second = results
    assert first["weights"] == second["weights"]  # all-reduce keeps replicas in lock step
    assert first["loss"][-1] < first["loss"][0] / 4
    assert first["keras"].startswith("tf_keras")


def _describe_node(args, ctx):
    described = {"job_name": ctx.job_name, "task_index": ctx.task_index,
                 "worker_num": ctx.worker_num, "num_workers": ctx.num_workers,
                 "tf_config": json.loads(os.environ["TF_CONFIG"]),
                 "ctx_tf_config": json.loads(ctx.tf_config), "cluster_spec": ctx.cluster_spec}
    from tfspark.fs import scratch_dir  # where HDFS mirrors and downloads go
    described["scratch"] = scratch_dir("probe-")
    with open(os.path.join(described["scratch"], "file"), "w") as f:
        f.write("left behind?")
    if ctx.job_name == "chief":  # under PSS tfspark runs the ps and worker TF servers
        import socket
        import time
        servers = ctx.cluster_spec["ps"] + ctx.cluster_spec["worker"]
        for address in servers:  # wait (bounded) for each server to start listening
            host, port = address.rsplit(":", 1)
            deadline = time.monotonic() + 60
            while True:
                try:
                    socket.create_connection((host, int(port)), timeout=5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
        described["servers_listening"] = servers
    return described


def test_roles_and_tf_config_with_ps_chief_and_evaluator(sc):
    cluster = TFCluster.run(sc, _describe_node, None, 4, num_ps=1, master_node="chief",
                            eval_node=True)
    results = cluster.shutdown(timeout=120, grace_secs=30)

    # ps and worker ran TF servers (started by tfspark), stopped once the chief finished
    assert results[0] is None and results[2] is None
    nodes = [results[1], results[3]]
    assert [(n["job_name"], n["task_index"], n["worker_num"]) for n in nodes] == [
        ("chief", 0, 1), ("evaluator", 0, 3)]
    spec = nodes[0]["tf_config"]["cluster"]
    assert nodes[0]["servers_listening"] == spec["ps"] + spec["worker"]
    assert sorted(spec) == ["chief", "ps", "worker"]  # the evaluator is not in the cluster
    assert [len(spec[job]) for job in ("ps", "chief", "worker")] == [1, 1, 1]
    for node in nodes:
        assert node["tf_config"] == node["ctx_tf_config"]
        assert node["tf_config"]["cluster"] == spec == node["cluster_spec"]
        assert node["tf_config"]["task"] == {"type": node["job_name"],
                                             "index": node["task_index"]}
        assert node["num_workers"] == 2  # chief + worker
    addresses = [a for job in spec.values() for a in job]
    assert len(set(addresses)) == len(addresses)
    for node in nodes:  # a node's temporary folders are in its task's folder, gone with it
        assert "/tfspark-task-" in node["scratch"] and not os.path.exists(node["scratch"])


def test_too_few_slots_fails_fast_naming_slots(sc):
    started = time.monotonic()
    with pytest.raises(PreflightError, match=r"needs 5 task slots .* has 4 task slots"):
        TFCluster.run(sc, _describe_node, None, 5)
    assert time.monotonic() - started < 30


def test_dynamic_allocation_is_refused(tmp_path):
    script = tmp_path / "dynamic.py"
    script.write_text(textwrap.dedent("""
        from pyspark.sql import SparkSession
        from tfspark import TFCluster, PreflightError
        spark = (SparkSession.builder.master("local[2]")
                 .config("spark.dynamicAllocation.enabled", "true")
                 .config("spark.ui.enabled", "false").getOrCreate())
        try:
            TFCluster.run(spark.sparkContext, print, None, 2)
        except PreflightError as e:
            print("PREFLIGHT:", e)
        spark.stop()
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=180)
    assert "PREFLIGHT: spark.dynamicAllocation.enabled is true" in out.stdout, out.stderr[-3000:]


def _fail_on_worker_1(args, ctx):
    import time
    if ctx.worker_num == 1:
        raise ValueError("boom from worker 1")
    time.sleep(600)  # would hang the job if tfspark did not stop it


def test_node_exception_reaches_driver_and_stops_the_others(sc):
    started = time.monotonic()
    cluster = TFCluster.run(sc, _fail_on_worker_1, None, 2)
    with pytest.raises(NodeError) as raised:
        cluster.shutdown()
    assert time.monotonic() - started < 60
    error = raised.value
    assert (error.role, error.index) == ("worker", 1)
    assert "ValueError: boom from worker 1" in str(error)
    assert "_fail_on_worker_1" in error.traceback_text
    _assert_no_active_jobs(sc)


def _crash_worker_0(args, ctx):
    import os
    import time
    if ctx.worker_num == 0:
        print("about to crash", flush=True)
        os._exit(3)
    time.sleep(600)


def test_node_process_crash_is_reported_with_its_output(sc):
    cluster = TFCluster.run(sc, _crash_worker_0, None, 2)
    with pytest.raises(NodeError, match="exited with code 3") as raised:
        cluster.shutdown()
    assert "about to crash" in raised.value.output_tail
    _assert_no_active_jobs(sc)


def _print_token(args, ctx):
    print(f"hello from {ctx.job_name} {ctx.task_index}: {args}", flush=True)
    return ctx.worker_num


def test_node_output_appears_on_the_driver(sc, capfd):
    results = TFCluster.run(sc, _print_token, "token-7f3a", 2).shutdown(timeout=120)
    assert results == [0, 1]
    out = capfd.readouterr().out
    assert "[worker:1] hello from worker 1: token-7f3a" in out
    assert "[worker:0] hello from worker 0: token-7f3a" in out


def _wait_for_release(args, ctx):
    import os
    import time
    deadline = time.time() + 120
    while not os.path.exists(args) and time.time() < deadline:
        time.sleep(0.2)
    return ctx.log_dir or "released"


def test_control_channel_refuses_peers_without_the_secret(sc, tmp_path):
    release = str(tmp_path / "release")
    cluster = TFCluster.run(sc, _wait_for_release, release, 2)
    try:
        address = cluster._attempts[-1].server_address
        with pytest.raises((ChannelError, OSError)):
            ControlClient(address, b"not-the-job-secret", lambda message: None)
    finally:
        open(release, "w").close()
    assert cluster.shutdown(timeout=120) == ["released", "released"]


def _keras_in_use(args, ctx):
    import tensorflow as tf
    return tf.keras.__name__


def test_keras_choice_does_not_leak_from_reused_python_workers(sc):
    # Make the executors' Python workers import TF first; Spark reuses them. Which Keras they
    # load depends on the executors' environment, so the two runs below cover both cases:
    # whichever Keras is loaded there, one run needs the other one.
    loaded = sc.parallelize(range(4), 4).map(
        lambda _: __import__("tensorflow").keras.__name__).collect()
    assert len(loaded) == 4

    results = TFCluster.run(sc, _keras_in_use, None, 2).shutdown(timeout=120)
    assert all(name.startswith("tf_keras") for name in results)

    opted_out = TFCluster.run(sc, _keras_in_use, None, 2,
                              env={"TF_USE_LEGACY_KERAS": "0"}).shutdown(timeout=120)
    assert all(name.startswith("keras") for name in opted_out)


def test_stage_that_cannot_start_is_cancelled_after_reservation_timeout(sc):
    # Occupy every task slot so the barrier stage cannot be scheduled.
    blocker = threading.Thread(target=lambda: sc.parallelize(range(4), 4).foreach(
        lambda _: __import__("time").sleep(14)), daemon=True)
    blocker.start()
    time.sleep(3)  # let the blocking tasks take the slots (polled below as well)
    started = time.monotonic()
    with pytest.raises(ReservationError, match="did not start within reservation_timeout=5"):
        TFCluster.run(sc, _print_token, None, 2, reservation_timeout=5)
    assert time.monotonic() - started < 60
    blocker.join(60)
    _assert_no_active_jobs(sc)


def _assert_no_active_jobs(sc, timeout=30):
    deadline = time.monotonic() + timeout
    while sc.statusTracker().getActiveJobsIds() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not sc.statusTracker().getActiveJobsIds()


@pytest.mark.parametrize("log_dir", ["logs", None])
def test_tensorboard_is_served_from_the_chief_while_training(sc, tmp_path, log_dir):
    """On the given log_dir, or (as TensorFlowOnSpark did) a folder of the chief's own."""
    import urllib.request
    release = str(tmp_path / "release")
    log_dir = str(tmp_path / log_dir) if log_dir else None
    cluster = TFCluster.run(sc, _wait_for_release, release, 2, tensorboard=True,
                            log_dir=log_dir)
    try:
        assert cluster.tensorboard_url and cluster.tensorboard_url.startswith("http://127.0.0.1:")
        deadline, status = time.monotonic() + 180, None  # TensorBoard imports TF: slow to start
        while status != 200 and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(cluster.tensorboard_url, timeout=5) as response:
                    status = response.status
            except OSError:
                time.sleep(0.5)
        assert status == 200
    finally:
        open(release, "w").close()
    served = cluster.shutdown(timeout=120)[0]
    if log_dir:
        assert served == log_dir
    else:  # the chief's own folder, removed with it
        assert os.path.basename(served) == "tensorboard" and not os.path.exists(served)
