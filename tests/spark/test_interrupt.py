"""Ctrl-C in the driver while a TF cluster runs: nothing is left behind, and the next run works."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

JOB = os.path.join(os.path.dirname(__file__), "interrupt_job.py")


def _await(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))  # no SO_REUSEADDR: a reserved port refuses this
            return True
        except OSError:
            return False


@pytest.mark.parametrize("mode", ["classic", "connect"])
def test_sigint_stops_nodes_jobs_and_ports_and_the_next_run_works(tmp_path, mode, request):
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, SPARK_LOCAL_IP="127.0.0.1")
    env.pop("SPARK_REMOTE", None)
    if mode == "connect":  # a client of the session's local Connect server
        env.update(request.getfixturevalue("connect_server")["env"])
    driver = subprocess.Popen([sys.executable, JOB, str(tmp_path), mode], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in driver.stdout:
            lines.append(line)
            if line.strip() == "READY":
                break
        nodes = [tmp_path / f"node-{i}" for i in range(2)]
        _await(lambda: all(n.exists() for n in nodes), 120, "both nodes to start")
        pids, ports = zip(*(map(int, n.read_text().split()) for n in nodes))
        assert all(_alive(pid) for pid in pids)

        driver.send_signal(signal.SIGINT)
        out, _ = driver.communicate(timeout=240)
        lines.append(out)
    finally:
        if driver.poll() is None:
            driver.kill()
    output = "".join(lines)
    assert driver.returncode == 0, output
    assert "INTERRUPTED" in output
    _await(lambda: not any(_alive(pid) for pid in pids), 30, f"node processes {pids} to end")
    assert all(_port_free(port) for port in ports), output
    if mode == "classic":
        assert "ACTIVE_JOBS []" in output, output
    assert "SECOND [0, 1]" in output, output
