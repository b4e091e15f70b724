"""Which nodes tfspark readies MultiWorkerMirroredStrategy's collective ops on before a dataset's
first TF op (the end-to-end case, a dataset built before the strategy, is in
tests/spark/test_ml.py and tests/spark/test_rows_trained.py)."""
from __future__ import annotations

import json

import pytest

from tfspark._strategies import mwms

TWO_WORKERS = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}


@pytest.mark.parametrize("cluster, task, expected", [
    (TWO_WORKERS, {"type": "worker", "index": 1}, True),
    ({"chief": ["h:1"], "worker": ["h:2"]}, {"type": "chief", "index": 0}, True),
    ({"chief": ["h:1"], "worker": ["h:2"], "evaluator": ["h:3"]},
     {"type": "evaluator", "index": 0}, False),                   # not in the collectives
    ({"worker": ["h:1"]}, {"type": "worker", "index": 0}, False),  # nothing to all-reduce with
    ({"chief": ["h:1"], "worker": ["h:2"], "ps": ["h:3"]},
     {"type": "chief", "index": 0}, False),                        # ParameterServerStrategy
])
def test_only_chiefs_and_workers_of_a_multi_worker_cluster_without_ps(monkeypatch, cluster,
                                                                      task, expected):
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
    assert mwms._mirrored_worker_of_several() is expected


@pytest.mark.parametrize("value", [None, "", "not json", "[1, 2]"])
def test_no_or_unreadable_tf_config_readies_nothing(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", value)
    assert mwms._mirrored_worker_of_several() is False
    mwms.before_first_tf_op()
    assert mwms._made_before_first_op is None
