"""TensorFlowOnSpark's standard set-up -- 2 executors x 1 core, a TF cluster of 2 -- trains
Spark-fed data: the data is the TF cluster's own stage input (``feed_mode="stage"``, chosen
because no slot is free for a feeding job), and every row is still trained once per epoch."""
from __future__ import annotations

import os

from conftest import run_driver

JOB = os.path.join(os.path.dirname(__file__), "no_spare_slot_job.py")


def test_two_single_core_executors_train_two_workers_on_fed_data(single_core_cluster, tmp_path):
    result, _ = run_driver(JOB, single_core_cluster.master_url, tmp_path, cwd=tmp_path)
    assert result["slots"] == 2  # no slot beyond the 2 TF nodes'
    # every fed row trained exactly once per epoch, by MWMS workers in lock step
    for node in result["trained"]:
        assert node["epochs"] == result["expected"]
        assert node["steps"] == result["trained"][0]["steps"]
        assert node["weights"] == result["trained"][0]["weights"]
    assert "one train() or inference() call" in result["second_train"]
    assert result["inference_after_train"].startswith("this TF cluster takes its data")
    # a Spark ML pipeline fits on the same 2 slots, with validation rows held out
    assert [h["epoch"] for h in result["history"]] == [1, 2]
    assert all("val_loss" in h for h in result["history"])
    assert result["scored"] == 200
