"""What a new user sees from the README's local demo (`make demo`): the three MNIST scripts on
an embedded local Spark print their results, one line per epoch, and none of TensorFlow's C++
start-up chatter, Keras's own epoch lines or Spark's large-task warning."""
from __future__ import annotations

import os
import re
import subprocess
import sys

from tfspark.tf_chatter import is_tf_chatter

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "examples", "mnist")


def _run(script, *args, cwd):
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable)
    for name in ("TF_CPP_MIN_LOG_LEVEL", "SPARK_REMOTE", "SPARK_HOME"):  # as a user has it
        env.pop(name, None)
    done = subprocess.run([sys.executable, os.path.join(EXAMPLES, script), *args], env=env,
                          cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-4000:]
    return done.stdout.splitlines()


def test_the_local_demo_prints_results_without_noise(tmp_path):
    data, export = f"file://{tmp_path}/data", f"file://{tmp_path}/export"
    setup = _run("mnist_data_setup.py", "--output", data, cwd=tmp_path)
    train = _run("mnist_spark.py", "--cluster_size", "2", "--epochs", "2", "--images_labels",
                 f"{data}/train", "--export_dir", export, cwd=tmp_path)
    infer = _run("mnist_inference.py", "--export_dir", export, "--images_labels",
                 f"{data}/test", "--output", f"file://{tmp_path}/predictions", cwd=tmp_path)

    assert not [line for line in setup if "task of very large size" in line]
    epochs = [line for line in train if re.match(r"tfspark: epoch \d/2: ", line)]
    assert len(epochs) == 2, train
    assert not [line for line in train if re.search(r"^Epoch \d|\d+/\d+ - \d+s", line)], train
    assert [line for line in infer if line.startswith("test accuracy: ")]
    noise = [line for line in setup + train + infer
             if is_tf_chatter(line) or "No training configuration found" in line]
    assert not noise, noise
