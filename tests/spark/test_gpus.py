"""GPUs through Spark's resource scheduling, on a standalone worker offering 2 fake GPUs (a
discovery script, as for real ones): each TF node's process sees exactly the GPU Spark gave its
task, whether the application asks every task for a GPU or only the TF cluster's stage does."""
from __future__ import annotations

import os

from conftest import run_driver
from tfspark.testing.spark import StandaloneCluster

JOB = os.path.join(os.path.dirname(__file__), "gpu_job.py")


def test_each_node_sees_exactly_its_gpus(tmp_path):
    with StandaloneCluster(str(tmp_path / "spark"), num_workers=1, cores_per_worker=3,
                           memory_per_worker="2g",
                           worker_resources={"gpu": ["0", "1"]}) as cluster:
        result, _ = run_driver(JOB, cluster.master_url, cwd=tmp_path)
    for run in ("stage_level", "fed", "app_wide"):
        nodes = result[run]
        assert sorted(g for node in nodes for g in node["gpus"]) == ["0", "1"], run
        for node in nodes:
            assert node["visible"] == ",".join(node["gpus"]), run  # before TF is imported
            assert node["growth"] == "true", run
    # the feeding job asked for no GPU and ran beside the TF stage that holds both
    assert sum(node["rows"] for node in result["fed"]) == 300
    message, seconds = result["too_many"]
    assert "asks 3 gpu per TF node, but each executor has 2" in message and seconds < 10
