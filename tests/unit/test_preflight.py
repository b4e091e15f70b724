"""Driver-side checks that need neither Spark nor TF."""
import pickle

import pytest

from tfspark._driver.preflight import (auto_feed_mode, check_arguments, check_dynamic_allocation,
                                       check_pickles, expected_slots, wait_for_slots)
from tfspark.errors import PreflightError

MODES = (0,)


def _args(**overrides):
    values = dict(num_executors=2, num_ps=0, master_node=None, eval_node=False,
                  reservation_timeout=600, env=None, input_mode=0, valid_input_modes=MODES)
    values.update(overrides)
    return values


@pytest.mark.parametrize("overrides, message", [
    ({"num_executors": 0}, "num_executors must be >= 1"),
    ({"num_executors": "2"}, "num_executors must be an int"),
    ({"num_ps": -1}, "num_ps must be >= 0"),
    ({"num_ps": 1}, "needs a chief"),
    ({"master_node": "master"}, "master_node must be None or 'chief'"),
    ({"eval_node": 1}, "eval_node must be True or False"),
    ({"reservation_timeout": 0}, "reservation_timeout must be a positive"),
    ({"input_mode": 7}, "input_mode must be one of"),
    ({"env": {"A": 1}}, "env must map str to str"),
    ({"env": {"TF_CONFIG": "{}"}}, "must not set TF_CONFIG"),
    ({"num_executors": 2, "num_ps": 1, "master_node": "chief", "eval_node": True},
     "leaves no chief or worker"),
    ({"num_ps": 1, "num_executors": 3, "master_node": "chief",
      "env": {"TF_USE_LEGACY_KERAS": "0"}}, "Keras 3 does not support ParameterServerStrategy"),
])
def test_bad_arguments_are_named(overrides, message):
    with pytest.raises(PreflightError, match=message):
        check_arguments(**_args(**overrides))


def test_good_arguments_give_roles():
    roles = check_arguments(**_args(num_executors=4, num_ps=1, master_node="chief",
                                    eval_node=True))
    assert [r.job_name for r in roles] == ["ps", "chief", "worker", "evaluator"]


def test_dynamic_allocation():
    check_dynamic_allocation({"spark.dynamicAllocation.enabled": "false"})
    with pytest.raises(PreflightError, match="spark.dynamicAllocation.enabled=false"):
        check_dynamic_allocation({"spark.dynamicAllocation.enabled": "true"})


@pytest.mark.parametrize("master, conf, slots", [
    ("local", {}, 1),
    ("local[3]", {}, 3),
    ("local[4,2]", {"spark.task.cpus": "2"}, 2),
    ("local-cluster[2,2,1024]", {}, 4),
    ("yarn", {"spark.executor.instances": "3", "spark.executor.cores": "2"}, 6),
    ("spark://m:7077", {"spark.cores.max": "5"}, 5),
    ("spark://m:7077", {}, None),
    ("yarn", {}, 2),  # Spark's defaults on YARN and Kubernetes: 2 executors x 1 core
    ("yarn", {"spark.executor.instances": "5"}, 5),
    ("k8s://https://api:6443", {"spark.executor.cores": "3"}, 6),
])
def test_expected_slots(master, conf, slots):
    assert expected_slots(conf, master) == slots


def _no_grant():
    raise AssertionError("the master is asked only where the settings do not tell")


@pytest.mark.parametrize("master, conf, nodes, mode", [
    ("local[3]", {}, 2, "job"),
    ("local[2]", {}, 2, "stage"),
    ("spark://m:7077", {"spark.cores.max": "4"}, 2, "job"),
    ("spark://m:7077", {"spark.cores.max": "2"}, 2, "stage"),
    ("yarn", {}, 2, "stage"),
    ("yarn", {"spark.executor.instances": "2", "spark.executor.cores": "2"}, 2, "job"),
])
def test_auto_feed_mode_follows_the_settings_without_asking_anything_else(master, conf, nodes,
                                                                          mode):
    assert auto_feed_mode(conf, master, nodes, _no_grant)[0] == mode


def test_auto_feed_mode_on_standalone_without_a_cap_follows_the_masters_grant():
    mode, why = auto_feed_mode({}, "spark://m:7077", 2, lambda: 4)
    assert mode == "job" and "granted the application 4 cores (4 slots)" in why
    assert auto_feed_mode({"spark.task.cpus": "2"}, "spark://m:7077", 2, lambda: 4)[0] == "stage"
    mode, why = auto_feed_mode({}, "spark://m:7077", 2, lambda: None)
    assert mode == "stage" and "set spark.cores.max" in why


def test_capped_application_fails_without_waiting():
    calls = []
    with pytest.raises(PreflightError, match="needs 3 task slots .* has 2 .* at most 2"):
        wait_for_slots(3, {}, "local[2]", lambda: calls.append(1) or 2, timeout=600)
    assert len(calls) == 1


def test_waits_for_executors_to_register():
    counts = iter([0, 1, 2, 4])
    wait_for_slots(4, {"spark.executor.instances": "2", "spark.executor.cores": "2"}, "yarn",
                   lambda: next(counts), timeout=30)


def test_unpicklable_args_are_named():
    import threading
    with pytest.raises(PreflightError, match="args cannot be pickled"):
        check_pickles(pickle.dumps, print, threading.Lock())
    with pytest.raises(PreflightError, match="main_fun must be callable"):
        check_pickles(pickle.dumps, "not a function", None)


def test_feeding_needs_a_slot_beside_the_nodes():
    with pytest.raises(PreflightError, match=r"needs 3 task slots \(num_executors=2, .* plus one "
                                             r"for the Spark job that feeds them"):
        wait_for_slots(2, {}, "local[2]", lambda: 2, timeout=600, feeding=True)


def test_yarn_shortfall_names_executors_container_size_and_free_memory(tmp_path, monkeypatch):
    import http.server
    import json
    import threading

    class RM(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = {"/ws/v1/cluster/metrics": {"clusterMetrics": {"availableMB": 1536}},
                    "/ws/v1/cluster/nodes": {"nodes": {"node": [
                        {"state": "RUNNING", "availMemoryMB": 1536}]}}}[self.path]
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RM)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    (tmp_path / "yarn-site.xml").write_text(
        "<configuration><property><name>yarn.resourcemanager.webapp.address</name>"
        f"<value>127.0.0.1:{server.server_address[1]}</value></property></configuration>")
    monkeypatch.setenv("HADOOP_CONF_DIR", str(tmp_path))
    monkeypatch.delenv("YARN_CONF_DIR", raising=False)
    conf = {"spark.executor.instances": "2", "spark.executor.cores": "2",
            "spark.executor.memory": "2g", "spark.executor.memoryOverhead": "1500m"}
    try:
        with pytest.raises(PreflightError) as raised:
            wait_for_slots(2, conf, "yarn", lambda: 2, timeout=1.0, feeding=True,
                           current_executors=lambda: 1)
    finally:
        server.shutdown()
    message = str(raised.value)
    assert "YARN granted 1 of the 2 executors" in message
    assert "asks for 3548 MB (spark.executor.memory 2048 MB + memoryOverhead 1500 MB)" in message
    assert "has 1536 MB available, at most 1536 MB free on one of its 1 running" in message
    assert "executor cores" not in message  # no advice about cores: cores were not the cause


def test_the_standalone_masters_grant_is_read_from_its_web_ui():
    """A real HTTP server on loopback answering as a standalone master's /json/ does."""
    import http.server
    import json
    import threading

    from tfspark._driver.standalone import granted_cores, master_ui_urls
    state = {"activeapps": [{"id": "app-1", "cores": 6}, {"id": "app-2", "cores": 2}]}

    class Master(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps(state).encode() if self.path == "/json/" else b""
            self.send_response(200 if body else 404)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Master)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        conf = {"spark.master.ui.port": str(server.server_port)}
        assert granted_cores("spark://127.0.0.1:7077", "app-1", conf) == 6
        assert granted_cores("spark://127.0.0.1:7077", "app-9", conf) is None
        # a master that is not there (HA: the other one answers)
        assert granted_cores("spark://127.0.0.9:7077,127.0.0.1:7077", "app-2", conf,
                             timeout=1) == 2
    finally:
        server.shutdown()
    assert master_ui_urls("yarn", {}) == []
    assert master_ui_urls("spark://h:7077", {}) == ["http://h:8080/json/"]
