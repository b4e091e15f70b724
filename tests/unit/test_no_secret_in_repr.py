"""The job's secret (and what else may hold credentials) never shows in a repr or str of the
objects that carry it, also inside a functools.partial as Spark's task functions are."""
from __future__ import annotations

import base64
import functools

from tfspark._feed.protocol import TRAIN
from tfspark._feed.spark_tasks import FeedPlan, dataframe_train_task
from tfspark._node.context import NodeContext
from tfspark._node.task import NodePlan, run_node
from tfspark.control import new_secret
from tfspark.roles import assign_roles


def _forms(secret: bytes):
    return [repr(secret), secret.hex(), base64.b64encode(secret).decode(), str(list(secret))]


def test_plans_and_contexts_do_not_show_the_secret():
    secret = new_secret()
    plan = NodePlan(roles=tuple(assign_roles(2)), driver_address=("127.0.0.1", 1), secret=secret,
                    payload=b"pickled-main-fun", env={"AWS_SECRET_ACCESS_KEY": "hunter2"},
                    default_fs="file:///", working_dir="/w", log_dir=None, tensorboard=False,
                    user="u", input_mode=1, stage_files={}, hadoop_conf_dir=None,
                    echo_output=False)
    feed = FeedPlan(1, (("127.0.0.1", 2),), ("worker:0",), secret, TRAIN, 10.0)
    ctx = NodeContext(job_name="worker", task_index=0, worker_num=0, num_workers=2,
                      cluster_spec={"worker": ["h:1", "h:2"]}, tf_config="{}", executor_id="0",
                      host="h", port=1, secret=secret)
    shown = [repr(plan), str(plan), repr(feed), str(feed), repr(ctx),
             repr(functools.partial(run_node, plan)),
             repr(functools.partial(dataframe_train_task, feed))]
    for text in shown:
        for form in _forms(secret):
            assert form not in text
        assert "hunter2" not in text and "pickled-main-fun" not in text
    assert "worker:0" in repr(feed)  # the rest is still there to debug with
