"""ctx.absolute_path and friends."""
from tfspark._node.context import NodeContext, resolve_path


def test_paths_with_a_scheme_are_kept():
    assert resolve_path("hdfs://nn:8020/a", "file:///", "/w") == "hdfs://nn:8020/a"
    assert resolve_path("file:///tmp/x", "hdfs://nn:8020", "/w") == "file:///tmp/x"


def test_relative_paths_on_hdfs_go_to_the_user_home():
    assert resolve_path("models/m1", "hdfs://nn:8020", "/w", "alice") == \
        "hdfs://nn:8020/user/alice/models/m1"
    assert resolve_path("/data/x", "hdfs://nn:8020/", "/w", "alice") == "hdfs://nn:8020/data/x"


def test_local_paths_resolve_against_the_driver_working_dir():
    assert resolve_path("out/m", "file:///", "/home/bob/job") == "/home/bob/job/out/m"
    assert resolve_path("/abs/m", "file:///", "/home/bob/job") == "/abs/m"


def test_chief_is_the_chief_else_worker_0():
    def ctx(job, index, spec):
        return NodeContext(job, index, 0, 2, spec, "{}", "e", "h", 1)
    with_chief = {"chief": ["a:1"], "worker": ["b:1"]}
    assert ctx("chief", 0, with_chief).is_chief
    assert not ctx("worker", 0, with_chief).is_chief
    assert ctx("worker", 0, {"worker": ["a:1", "b:1"]}).is_chief
    assert not ctx("worker", 1, {"worker": ["a:1", "b:1"]}).is_chief
