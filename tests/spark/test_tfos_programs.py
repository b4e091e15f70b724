"""TensorFlowOnSpark programs -- written as TFoS's own examples and tests write them, with only
the import line changed -- run on tfspark in TFoS's standard set-up: 2 executors x 1 core,
a TF cluster of 2 (tests/spark/tfos_programs.py)."""
from __future__ import annotations

import os

import numpy as np
import pytest

from conftest import run_driver

JOB = os.path.join(os.path.dirname(__file__), "tfos_programs.py")


@pytest.fixture(scope="module")
def tfos(single_core_cluster, tmp_path_factory):
    work = tmp_path_factory.mktemp("tfos")
    result, done = run_driver(JOB, single_core_cluster.master_url, work, cwd=work, timeout=900)
    return result, done.stdout + done.stderr


def test_input_mode_tensorflow_runs_the_map_fun_on_every_node(tfos):
    assert tfos[0]["basic_tf"] == "ok"


def test_release_port_false_leaves_the_nodes_port_held_in_tmp_socket(tfos):
    assert tfos[0]["port_released"] == tfos[0]["port_unreleased"] == "ok"


def test_inference_answers_every_row_in_order_and_summable(tfos):
    result, _ = tfos
    assert result["inference_sum"] == sum(x * x for x in range(1000))
    assert result["inference_first"] == [0, 1, 4]


def test_exceptions_during_and_after_feeding_raise_on_the_driver(tfos):
    result, _ = tfos
    message, seconds = result["exception_during_feeding"]
    # feed_timeout=1 s (as TFoS's test has it) may run out before the node, still importing
    # TensorFlow, listens for the feed or answers and raises: either is the error the driver
    # must raise, at once
    assert ("FAKE exception during feeding" in message
            or "within feed_timeout=1.0s" in message), message
    assert seconds < 60
    assert "FAKE exception after feeding" in result["exception_after_feeding"]


def test_mnist_keras_examples_train_and_export_in_both_input_modes(tfos):
    result, output = tfos
    assert "saved_model.pb" in result["mnist_spark_export"]
    assert "saved_model.pb" in result["mnist_tf_export"]


def test_pipeline_estimator_and_model_with_mappings(tfos):
    result, output = tfos
    assert result["pipeline_exported"]
    assert result["pipeline_columns"] == ["cout"]  # TFoS: the output columns only
    # the model was built from the driver's tf-keras classes and compiled with tf-keras's
    # Adam(lr=0.2) on the nodes; tf-keras >= 2.11 ignores `lr` (and says so), so it trained at
    # the default rate: the two test rows' predictions exist and differ, nothing more
    preds = result["pipeline_preds"]
    assert len(preds) == 2 and all(np.isfinite(preds)) and preds[0] != preds[1]
    assert "`lr` is deprecated" in output


def test_dfutil_round_trip_keeps_values_and_types(tfos):
    dfutil = tfos[0]["dfutil"]
    assert dfutil["loaded"] and not dfutil["not_loaded"] and not dfutil["filtered"]
    assert dfutil["types"] == {"a": "string", "b": "bigint", "c": "array<bigint>",
                               "d": "double", "e": "array<double>", "f": "binary"}
    assert dfutil["values"] == ["text string", 1, [2, 3, 4, 5], -1.1, [-2.3, -4.5],
                                [0xff, 0xfe, 0xfd, 0xfc]]


def test_tfparallel_runs_independent_single_node_instances(tfos):
    parallel = tfos[0]["parallel"]
    assert sorted(parallel) == ["0", "1"]
    for node in parallel.values():
        assert node["num_workers"] == 2 and node["tf_config"] is None
