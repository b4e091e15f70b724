"""``feed_mode="auto"`` decides from what the application will have, not from the executors
registered so far: the same program feeds the same way however fast its executors start."""
from __future__ import annotations

import os
from urllib.parse import urlsplit

import pytest

from conftest import run_driver

JOB = os.path.join(os.path.dirname(__file__), "feed_mode_job.py")


@pytest.fixture(scope="module")
def staggered_cluster(tmp_path_factory):
    """2 workers x 1 core; the second worker's executors start 4 s after the first's."""
    from tfspark.testing.spark import StandaloneCluster
    with StandaloneCluster(str(tmp_path_factory.mktemp("spark-staggered")), num_workers=2,
                           cores_per_worker=1, memory_per_worker="2g",
                           executor_start_delays=[0, 4]) as cluster:
        yield cluster


def test_auto_feeds_with_a_job_when_a_slot_will_be_spare_though_its_executor_is_late(
        staggered_cluster, tmp_path):
    ui_port = str(urlsplit(staggered_cluster.web_url).port)
    result, _ = run_driver(JOB, staggered_cluster.master_url, ui_port, 1, cwd=tmp_path)
    # when TFCluster.run was called, the late executor's slot was not there yet...
    assert result["registered_at_start"] < 2
    # ...but the master had granted both cores: one TF node, one slot for the feeding job
    assert result["stage"] is False
    assert result["said"] == ["tfspark: feed_mode='auto' feeds with a Spark job per train(): "
                              "the standalone master granted the application 2 cores "
                              "(2 slots): 1 beside the 1 TF nodes for feeding jobs"]
    assert result["rows"] == [100]


def test_auto_feeds_in_the_stage_when_no_slot_will_be_spare(staggered_cluster, tmp_path):
    ui_port = str(urlsplit(staggered_cluster.web_url).port)
    result, _ = run_driver(JOB, staggered_cluster.master_url, ui_port, 2, cwd=tmp_path)
    assert result["stage"] is True
    assert "granted the application 2 cores (2 slots): none beside the 2 TF nodes" in \
        result["said"][0]
    assert sum(result["rows"]) == 100
