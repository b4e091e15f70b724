"""The pure rules of a cluster that restarts on fewer workers (TFCluster.run(min_workers=...))."""
from __future__ import annotations

import pytest

from tfspark._driver.preflight import check_elastic
from tfspark._driver.progress import TrainingProgress
from tfspark._node.context import NodeContext
from tfspark.errors import PreflightError
from tfspark.roles import assign_roles, with_fewer_workers


def labels(roles):
    return [r.label for r in roles]


def test_fewer_slots_drop_workers_from_the_last_and_keep_the_other_roles():
    full = assign_roles(5, chief=True, evaluator=True)  # chief, worker x3, evaluator
    assert labels(with_fewer_workers(full, 4)) == ["chief:0", "worker:0", "worker:1",
                                                   "evaluator:0"]
    assert labels(with_fewer_workers(full, 2)) == ["chief:0", "evaluator:0"]
    assert with_fewer_workers(full, 1) is None
    assert labels(with_fewer_workers(assign_roles(2), 1)) == ["worker:0"]
    assert with_fewer_workers(assign_roles(2), 0) is None
    assert labels(with_fewer_workers(full, 9)) == labels(full)  # never more than it had


def ctx(num_workers, full, policy):
    return NodeContext(job_name="worker", task_index=0, worker_num=0, num_workers=num_workers,
                       cluster_spec={"worker": ["h:1"]}, tf_config="{}", executor_id="e",
                       host="h", port=1, full_num_workers=full, batch_policy=policy)


@pytest.mark.parametrize("policy, batch, rate", [("global", 96, 0.1), ("per_worker", 32, 0.1 / 3)])
def test_on_fewer_workers_the_policy_keeps_the_global_or_the_per_worker_batch(policy, batch,
                                                                             rate):
    shrunk = ctx(1, 3, policy)
    assert shrunk.per_worker_batch(32) == batch
    assert shrunk.scaled_learning_rate(0.1) == pytest.approx(rate)
    full = ctx(3, 3, policy)
    assert (full.per_worker_batch(32), full.scaled_learning_rate(0.1)) == (32, 0.1)


def test_the_global_batch_is_kept_rounding_up():
    assert ctx(2, 3, "global").per_worker_batch(33) == 50  # 99 rows a step -> 100


def test_elastic_settings_are_checked_naming_the_setting():
    roles = assign_roles(3, chief=True)
    check_elastic(2, 30, "global", roles)
    for bad, words in ((0, "min_workers must be an int from 1 to the 3"),
                       (4, "min_workers must be an int from 1 to the 3"),
                       (True, "min_workers")):
        with pytest.raises(PreflightError, match=words):
            check_elastic(bad, 30, "global", roles)
    with pytest.raises(PreflightError, match="batch_policy must be 'global' or 'per_worker'"):
        check_elastic(None, 30, "keep", roles)
    with pytest.raises(PreflightError, match="slot_wait"):
        check_elastic(None, -1, "global", roles)
    with pytest.raises(PreflightError, match="ParameterServerStrategy"):
        check_elastic(1, 30, "global", assign_roles(3, num_ps=1, chief=True))


def test_epochs_record_the_size_they_ran_at_and_the_line_says_when_smaller(capsys):
    import io
    out = io.StringIO()
    progress = TrainingProgress(out=out)
    progress.set_size(2, 2)
    progress.on_event({"event": "epoch_end", "epoch": 1, "epochs": 2, "logs": {"loss": 1.0},
                       "secs": 1.0})
    progress.set_size(1, 2)
    progress.on_event({"event": "epoch_end", "epoch": 2, "epochs": 2, "logs": {"loss": 0.5},
                       "secs": 1.0})
    assert [h["workers"] for h in progress.history] == [2, 1]
    lines = out.getvalue().splitlines()
    assert "(1 of 2 workers)" in lines[-1] and "workers" not in lines[0]
