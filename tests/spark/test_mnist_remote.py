"""The MNIST example scripts with ``--remote``: data set-up, training (Spark-fed, live progress)
and inference, each a Spark Connect client of a local Connect server, as a user runs them."""
from __future__ import annotations

import os
import re
import subprocess
import sys

EXAMPLES = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "examples", "mnist")


def _run(script: str, *args: str, server, cwd) -> str:
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, SPARK_LOCAL_IP="127.0.0.1",
               **server["env"])
    env.pop("SPARK_REMOTE", None)  # the script is told with --remote, as a user does
    done = subprocess.run([sys.executable, os.path.join(EXAMPLES, script), "--remote",
                           server["url"], *args], env=env, cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=480)
    assert done.returncode == 0, f"{script} exited {done.returncode}:\n{done.stdout[-5000:]}"
    return done.stdout


def test_mnist_scripts_run_as_spark_connect_clients(tmp_path, connect_server):
    data, export = f"file://{tmp_path}/data", f"file://{tmp_path}/export"
    _run("mnist_data_setup.py", "--output", data, server=connect_server, cwd=tmp_path)
    trained = _run("mnist_spark.py", "--images_labels", f"{data}/train", "--export_dir", export,
                   "--epochs", "2", "--timeout", "400", server=connect_server, cwd=tmp_path)
    assert f"exported SavedModel: {export}/1" in trained, trained[-3000:]
    assert re.search(r"^tfspark: epoch 2/2: loss [\d.]+ - accuracy [\d.]+ - \d+ rows/s",
                     trained, re.M), trained[-3000:]
    scored = _run("mnist_inference.py", "--export_dir", export, "--images_labels",
                  f"{data}/test", "--output", f"file://{tmp_path}/predictions",
                  server=connect_server, cwd=tmp_path)
    accuracy = float(re.search(r"^test accuracy: ([\d.]+)$", scored, re.M).group(1))
    assert accuracy > 0.85, scored[-3000:]
    assert "master: local" in scored  # the Connect server's own master, read through Connect
