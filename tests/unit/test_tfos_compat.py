"""tfspark.compat.tensorflowonspark without Spark: TFoS's path rule, args handling, the pipeline
stages' params, and the clear errors for what is not kept."""
from __future__ import annotations

import argparse
import getpass
import os

import pytest

from tfspark import TFSparkError
from tfspark.compat.tensorflowonspark import NotKeptError, TFCluster, TFNode, dfutil


@pytest.mark.parametrize("default_fs", ["file://", "hdfs://", "viewfs://"])
def test_hdfs_path_normalizes_paths_as_tfos_documents(default_fs):
    cwd, user = os.getcwd(), os.environ.get("HADOOP_USER_NAME") or getpass.getuser()
    ctx = type("Ctx", (), {"defaultFS": default_fs, "working_dir": cwd})
    for url in ("hdfs://foo/bar", "viewfs://foo/bar", "file://foo/bar", "s3a://b/k"):
        assert TFNode.hdfs_path(ctx, url) == url
    assert TFNode.hdfs_path(ctx, "/foo/bar") == default_fs + "/foo/bar"
    relative = {"file://": f"file://{cwd}/foo/bar",
                "hdfs://": f"hdfs:///user/{user}/foo/bar",
                "viewfs://": f"viewfs:///user/{user}/foo/bar"}
    assert TFNode.hdfs_path(ctx, "foo/bar") == relative[default_fs]


def test_hdfs_path_with_a_namenode_and_the_context_built_from_tfsparks():
    from tfspark._node.context import NodeContext
    node = NodeContext(job_name="chief", task_index=0, worker_num=0, num_workers=2,
                       cluster_spec={"chief": ["h:1"], "worker": ["h:2"]}, tf_config="{}",
                       executor_id="0", host="h", port=1, default_fs="hdfs://nn:8020/",
                       working_dir="/work", user="ana")
    ctx = TFNode.TFNodeContext(node)
    assert ctx.defaultFS == "hdfs://nn:8020"
    assert (ctx.worker_num, ctx.executor_id, ctx.num_workers) == (0, 0, 2)
    assert ctx.absolute_path("models/m") == "hdfs://nn:8020/user/ana/models/m"
    assert ctx.absolute_path("/data") == "hdfs://nn:8020/data"
    assert ctx.is_chief  # tfspark's own attributes stay reachable
    ctx.release_port()  # nothing to do, and no error
    with pytest.raises(NotKeptError, match="tf.distribute.MultiWorkerMirroredStrategy"):
        ctx.start_cluster_server()
    with pytest.raises(NotKeptError, match="DataFeed"):
        ctx.mgr.get_queue("input")


def test_data_feed_takes_ctx_mgr_only():
    with pytest.raises(TFSparkError, match="ctx.mgr"):
        TFNode.DataFeed(object())


def test_what_is_not_kept_says_what_to_use_instead():
    with pytest.raises(NotKeptError, match="driver_ps_nodes is not kept.*num_executors"):
        TFCluster.run(None, print, None, 3, 1, driver_ps_nodes=True)
    with pytest.raises(NotKeptError, match="custom feed queues"):
        TFCluster.run(None, print, None, 2, queues=["input", "mine"])
    with pytest.raises(NotKeptError, match="export a Keras model"):
        TFNode.export_saved_model(None, "/tmp/x", ["serve"], {})
    with pytest.raises(NotKeptError, match="saveAsTFRecords"):
        dfutil.toTFExample([])


def test_namespace_and_merged_params_as_tfos_gives_them():
    from tfspark.compat.tensorflowonspark.pipeline import Namespace, TFEstimator, TFModel
    parsed = argparse.Namespace(lr=0.1, batch_size=7)
    assert vars(Namespace(parsed)) == {"lr": 0.1, "batch_size": 7}
    assert list(Namespace(["--lr", "0.1"])) == ["--lr", "0.1"]
    assert Namespace({"a": 1}) == Namespace({"a": 1})
    with pytest.raises(TypeError):
        Namespace(42)

    estimator = TFEstimator(print, parsed).setInputMapping({"c": "x"}).setEpochs(3)
    merged = estimator.merge_args_params()
    assert (merged.lr, merged.epochs, merged.batch_size) == (0.1, 3, 100)  # params win
    assert merged.input_mapping == {"c": "x"} and merged.master_node == "chief"
    assert parsed.batch_size == 7  # the user's args are left alone
    model = TFModel(parsed).setOutputMapping({"y": "pred"}).setSignatureDefKey("serving_default")
    assert model.getOutputMapping() == {"y": "pred"} and model.getBatchSize() == 100
