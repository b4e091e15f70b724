"""Role assignment and TF_CONFIG: pure functions, no Spark, no TF."""
import json

import pytest

from tfspark.roles import Role, assign_roles, cluster_spec, num_training_nodes, tf_config


def test_order_is_ps_chief_workers_evaluator():
    roles = assign_roles(6, num_ps=2, chief=True, evaluator=True)
    assert [r.label for r in roles] == ["ps:0", "ps:1", "chief:0", "worker:0", "worker:1",
                                        "evaluator:0"]
    assert [r.worker_num for r in roles] == list(range(6))
    assert num_training_nodes(roles) == 3


def test_every_index_is_unique_within_its_job():
    for n in range(1, 9):
        roles = assign_roles(n + 2, num_ps=1, chief=True)
        labels = [r.label for r in roles]
        assert len(set(labels)) == len(labels)


@pytest.mark.parametrize("args", [(1, 1, True, False), (1, 0, False, True), (0, 0, False, False)])
def test_counts_that_leave_no_trainer_are_refused(args):
    with pytest.raises(ValueError, match="leaves no chief or worker"):
        assign_roles(*args)


def test_chief_alone_is_a_cluster():
    assert [r.label for r in assign_roles(1, chief=True)] == ["chief:0"]


def test_cluster_spec_leaves_out_the_evaluator_and_tf_config_names_the_task():
    roles = assign_roles(4, num_ps=1, chief=True, evaluator=True)
    addresses = ["h0:1", "h1:2", "h2:3", "h3:4"]
    spec = cluster_spec(roles, addresses)
    assert spec == {"ps": ["h0:1"], "chief": ["h1:2"], "worker": ["h2:3"]}
    config = json.loads(tf_config(spec, roles[3]))
    assert config == {"cluster": spec, "task": {"type": "evaluator", "index": 0}}
    assert json.loads(tf_config(spec, Role("worker", 0, 2)))["task"]["type"] == "worker"


def test_cluster_spec_needs_one_address_per_role():
    with pytest.raises(ValueError):
        cluster_spec(assign_roles(2), ["h:1"])
