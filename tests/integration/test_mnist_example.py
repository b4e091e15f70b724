"""The MNIST example end to end with spark-submit on Spark standalone, data on HDFS.

Runs examples/mnist/{mnist_data_setup,mnist_spark,mnist_inference}.py as a user would, on the
digits fallback (1,438 train / 359 test images, no download), 2 TF workers and a few epochs.
YARN (client and cluster mode, a packed environment) runs in test_yarn_readme.py, from the
README's own commands. Input mode tf runs in the crash-and-resume test here (and, on a Docker
Compose cluster, the whole example runs again in docker/test.sh).
Each spark-submit's wall time is printed as ``[timing] ...`` (see them with ``pytest -s``).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest

from tfspark import export, fs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples", "mnist")
SPARK_SUBMIT = os.path.join(os.path.dirname(sys.executable), "spark-submit")
TIMEOUT = 600          # seconds for one spark-submit
SLOTS = 4              # 2 TF nodes + 2 slots for the feeding job (InputMode.SPARK)
TRAIN_ARGS = ["--cluster_size", "2", "--epochs", "5", "--batch_size", "16", "--timeout", "500"]

pytestmark = pytest.mark.slow


def _env(hadoop) -> dict:
    env = dict(os.environ, **hadoop.env(), PYSPARK_PYTHON=sys.executable,
               SPARK_LOCAL_IP="127.0.0.1", TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("HADOOP_USER_NAME", None)
    env.pop("SPARK_HOME", None)
    return env


def _submit(what: str, conf: dict, script: str, args: list, env: dict, cwd,
            expect_failure: bool = False) -> str:
    cmd = [SPARK_SUBMIT]
    for key, value in conf.items():
        cmd += ["--conf", f"{key}={value}"]
    cmd += [os.path.join(EXAMPLES, script), *args]
    started = time.time()
    proc = subprocess.run(cmd, env=env, cwd=str(cwd), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT)
    print(f"[timing] {what}: {time.time() - started:.1f}s", flush=True)
    tail = "\n".join(proc.stdout.splitlines()[-120:])
    if expect_failure:
        assert proc.returncode != 0, f"{' '.join(cmd)} should have failed:\n{tail}"
        return proc.stdout
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}:\n{tail}"
    if conf.get("spark.submit.deployMode") == "client":  # ran on the cluster, not local[N]
        assert f"master: {conf['spark.master']}" in proc.stdout, tail
    return proc.stdout


def _free_cores(master_web_url: str) -> int:
    with urllib.request.urlopen(f"{master_web_url}/json/", timeout=10) as resp:
        state = json.load(resp)
    return int(state["cores"]) - int(state["coresused"])


@pytest.fixture(scope="module")
def standalone_master(standalone_cluster, tmp_path_factory):
    """The shared standalone cluster's master URL, or a private cluster's when another
    application (e.g. the session's `spark` fixture) holds the shared one's cores."""
    if _free_cores(standalone_cluster.web_url) >= SLOTS:
        yield standalone_cluster.master_url
        return
    from tfspark.testing.spark import StandaloneCluster
    with StandaloneCluster(str(tmp_path_factory.mktemp("mnist-standalone")), num_workers=2,
                           cores_per_worker=2) as private:
        yield private.master_url


def _standalone_conf(master_url: str) -> dict:
    return {"spark.master": master_url,
            "spark.submit.deployMode": "client",
            "spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1",
            "spark.executor.cores": "2", "spark.cores.max": str(SLOTS),
            "spark.executor.memory": "1g", "spark.driver.memory": "1g",
            "spark.ui.enabled": "false", "spark.pyspark.python": sys.executable,
            "spark.executorEnv.TF_CPP_MIN_LOG_LEVEL": "2"}


@pytest.fixture(scope="module")
def mnist_data(standalone_master, hdfs_cluster, tmp_path_factory):
    """Digits TFRecords written to HDFS by mnist_data_setup.py (spark-submit, standalone)."""
    base = f"{hdfs_cluster.default_fs}/tmp/mnist-{uuid.uuid4().hex[:8]}"
    out = _submit("data setup (standalone)", _standalone_conf(standalone_master),
                  "mnist_data_setup.py", ["--output", f"{base}/data"], _env(hdfs_cluster),
                  tmp_path_factory.mktemp("mnist-data"))
    assert "wrote 1438 train images" in out and "wrote 359 test images" in out, out[-3000:]
    return base


def _check_saved_model(export_dir: str, tmp_path) -> str:
    """The latest version under export_dir is a SavedModel that loads and predicts 10 scores."""
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import numpy as np
    import tensorflow as tf

    version = export.latest_version(export_dir)
    assert fs.exists(fs.join(version, "saved_model.pb")), fs.listdir(version)
    loaded = tf.saved_model.load(export.local_copy(version, str(tmp_path)))
    scores = loaded.signatures["serving_default"](tf.constant(np.zeros((3, 784), "float32")))
    (output,) = scores.values()
    assert output.shape == (3, 10)
    np.testing.assert_allclose(output.numpy().sum(axis=1), 1.0, rtol=1e-4)
    return version


def test_standalone_input_mode_spark_train_export_inference(standalone_master, mnist_data,
                                                           hadoop_env, tmp_path):
    conf, env = _standalone_conf(standalone_master), _env_from(hadoop_env)
    export_dir = f"{mnist_data}/export_spark"
    out = _submit("train --input_mode spark (standalone)", conf, "mnist_spark.py",
                  [*TRAIN_ARGS, "--input_mode", "spark", "--images_labels",
                   f"{mnist_data}/data/train", "--export_dir", export_dir,
                   "--model_dir", f"{mnist_data}/ckpt", "--log_dir", f"{mnist_data}/logs"],
                  env, tmp_path)
    assert f"exported SavedModel: {export_dir}/1" in out, out[-3000:]
    assert any(n.startswith("weights-05") for n in fs.listdir(f"{mnist_data}/ckpt/weights"))
    assert not fs.exists(f"{mnist_data}/ckpt/backup")  # a finished run deletes its backup
    assert fs.listdir(f"{mnist_data}/logs")  # TensorBoard logs published to HDFS
    _check_saved_model(export_dir, tmp_path)

    predictions = f"{mnist_data}/predictions"
    out = _submit("inference (standalone)", conf, "mnist_inference.py",
                  ["--export_dir", export_dir, "--images_labels", f"{mnist_data}/data/test",
                   "--output", predictions], env, tmp_path)
    match = re.search(r"test accuracy: ([0-9.]+)", out)
    assert match, out[-3000:]
    print(f"[accuracy] standalone, input_mode spark: {match.group(1)}")
    assert float(match.group(1)) >= 0.90, out[-3000:]
    assert "_SUCCESS" in fs.listdir(predictions)


def test_standalone_parameter_server_strategy(standalone_master, mnist_data, hadoop_env,
                                               tmp_path):
    """PSS: 1 ps + chief + 1 worker, fed from Spark (the 4th slot runs the feeding job)."""
    conf, env = _standalone_conf(standalone_master), _env_from(hadoop_env)
    export_dir = f"{mnist_data}/export_ps"
    out = _submit("train --strategy ps --input_mode spark (standalone)", conf, "mnist_spark.py",
                  ["--strategy", "ps", "--num_ps", "1", "--cluster_size", "1", "--epochs", "5",
                   "--batch_size", "32", "--timeout", "500", "--input_mode", "spark",
                   "--images_labels", f"{mnist_data}/data/train", "--export_dir", export_dir],
                  env, tmp_path)
    assert f"exported SavedModel: {export_dir}/1" in out, out[-3000:]
    out = _submit("inference of the PSS model (standalone)", conf, "mnist_inference.py",
                  ["--export_dir", export_dir, "--images_labels", f"{mnist_data}/data/test",
                   "--output", f"{mnist_data}/predictions_ps"], env, tmp_path)
    match = re.search(r"test accuracy: ([0-9.]+)", out)
    assert match, out[-3000:]
    print(f"[accuracy] standalone, PSS, input_mode spark: {match.group(1)}")
    assert float(match.group(1)) >= 0.90, out[-3000:]


def _env_from(hadoop_env: dict) -> dict:
    env = dict(os.environ, **hadoop_env, PYSPARK_PYTHON=sys.executable,
               SPARK_LOCAL_IP="127.0.0.1", TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("HADOOP_USER_NAME", None)
    env.pop("SPARK_HOME", None)
    return env


def test_crashes_resume_from_the_backup_in_the_job_and_on_rerun(standalone_master, mnist_data,
                                                                hadoop_env, tmp_path):
    conf, env = _standalone_conf(standalone_master), _env_from(hadoop_env)
    export_dir, model_dir = f"{mnist_data}/export_resume", f"{mnist_data}/ckpt_resume"
    args = [*TRAIN_ARGS, "--input_mode", "tf", "--images_labels", f"{mnist_data}/data/train",
            "--export_dir", export_dir, "--model_dir", model_dir]
    crashed = _submit("train, killed after epoch 2 (standalone)", conf, "mnist_spark.py",
                      args + ["--crash_after_epoch", "2", "--max_restarts", "0"], env, tmp_path,
                      expect_failure=True)
    # the driver's progress line ends each epoch; the crash comes at epoch 2's end, before it
    assert "killed by signal 9" in crashed, crashed[-3000:]
    assert "tfspark: epoch 1/5: " in crashed and "--crash_after_epoch 2" in crashed
    assert "tfspark: epoch 2/5: " not in crashed and "epoch 3/5" not in crashed, crashed[-3000:]
    assert fs.exists(f"{model_dir}/backup") and not export.versions(export_dir)

    # rerun: resumes after epoch 2, not from epoch 1; crashes after epoch 4, and the restarted
    # TF cluster resumes after epoch 4 within the same job
    out = _submit("train again, killed after epoch 4 (standalone)", conf, "mnist_spark.py",
                  args + ["--crash_after_epoch", "4"], env, tmp_path)
    epochs = re.findall(r"tfspark: epoch (\d)/5: ", out)
    assert epochs == ["3", "5"], epochs  # 4 ended in the crash (its line would come next)
    assert "epoch 1/5" not in out and "epoch 2/5" not in out, out[-3000:]
    restart = out.index("restarting the TF cluster (1 of 2): worker:0")
    assert out.index("--crash_after_epoch 4") < restart < out.index("tfspark: epoch 5/5"), \
        out[-3000:]
    assert "killed by signal 9" in out[restart:].splitlines()[0]
    assert f"exported SavedModel: {export_dir}/1" in out, out[-3000:]
    assert export.versions(export_dir) == [1]
    assert not fs.exists(f"{model_dir}/backup")
