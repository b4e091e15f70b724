"""The strategy backends: every strategy-specific answer tfspark acts on, per strategy."""
from __future__ import annotations

import pytest

from tfspark._strategies.base import for_job_names, for_roles
from tfspark._strategies.mwms import MIRRORED
from tfspark._strategies.pss import PARAMETER_SERVER
from tfspark.roles import assign_roles


def test_parameter_servers_make_a_parameter_server_cluster():
    assert for_roles(assign_roles(4, num_ps=1, chief=True)) is PARAMETER_SERVER
    assert for_roles(assign_roles(3, chief=True, evaluator=True)) is MIRRORED
    assert for_roles(assign_roles(1)) is MIRRORED  # one node, no strategy: the same answers
    assert for_job_names({"chief": ["h:1"], "worker": ["h:2"]}) is MIRRORED  # a cluster spec


def test_data_shares_go_to_chief_and_workers_or_to_pss_workers_only():
    mwms = assign_roles(3, chief=True, evaluator=False)
    assert [r.label for r in MIRRORED.data_nodes(mwms)] == ["chief:0", "worker:0", "worker:1"]
    assert [MIRRORED.data_index(mwms, r) for r in mwms] == [0, 1, 2]
    pss = assign_roles(5, num_ps=1, chief=True, evaluator=True)
    assert [r.label for r in PARAMETER_SERVER.data_nodes(pss)] == ["worker:0", "worker:1"]
    assert [PARAMETER_SERVER.data_index(pss, r) for r in pss] == [None, None, 0, 1, None]


@pytest.mark.parametrize("job_name, mwms, pss", [
    ("chief", (True, False, False), (True, False, False)),
    ("worker", (True, False, False), (False, True, True)),
    ("ps", (False, False, False), (False, True, False)),
    ("evaluator", (False, False, False), (False, False, False)),
])
def test_who_ends_on_its_own_only_serves_and_restarts_alone(job_name, mwms, pss):
    """(ends on its own, only serves, restarts alone in place) for each role."""
    for strategy, expected in ((MIRRORED, mwms), (PARAMETER_SERVER, pss)):
        assert (job_name in strategy.finishers, strategy.serves_only(job_name),
                strategy.restarts_in_place(job_name)) == expected, strategy


def test_only_parameter_server_nodes_fail_fast_to_the_caller_and_spill_tfrecords():
    assert PARAMETER_SERVER.node_env() == {"GRPC_FAIL_FAST": "use_caller"}
    assert MIRRORED.node_env() == {}
    assert (PARAMETER_SERVER.serving_spill_format, MIRRORED.serving_spill_format) == (
        "tfrecord", "arrow")


def test_keras3_is_refused_for_parameter_servers_and_warned_about_for_mwms():
    assert PARAMETER_SERVER.keras3_problem()[0] and not MIRRORED.keras3_problem()[0]
    assert "ParameterServerStrategy" in PARAMETER_SERVER.keras3_problem()[1]
    assert PARAMETER_SERVER.stages_files and not MIRRORED.stages_files
