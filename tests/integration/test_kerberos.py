"""tfspark on a Kerberized HDFS + YARN, against a real MIT KDC (the ``secure_hadoop`` fixture).

Drivers run as their own processes (``kerberos_jobs.py``) with the secure cluster's settings
and a ticket cache from ``kinit``, or none; Spark's executors run without any ticket, so every
HDFS operation they and the TF nodes do proves the delegation tokens tfspark hands them.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
JOBS = os.path.join(HERE, "kerberos_jobs.py")

pytestmark = pytest.mark.slow


def _env(cluster, tmp_path, ticket: bool) -> dict:
    """The driver's environment: the secure cluster's settings, and a ticket cache from kinit
    (``ticket``) or one that does not exist."""
    env = dict(os.environ, **cluster.env(), TFSPARK_TEST_TMP=str(tmp_path),
               PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    for name in ("HADOOP_USER_NAME", "SPARK_REMOTE", "HADOOP_TOKEN_FILE_LOCATION"):
        env.pop(name, None)
    if ticket:
        env.update(cluster.kinit(tmp_path / "krb5cc"))
    else:
        env["KRB5CCNAME"] = f"FILE:{tmp_path / 'no-such-ticket-cache'}"
    return env


def run_job(env, *args, timeout=600) -> dict:
    done = subprocess.run([sys.executable, JOBS, *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=env["TFSPARK_TEST_TMP"])
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stdout[-4000:] + done.stderr[-8000:]
    return json.loads(lines[0][len("RESULT "):]), done


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def test_the_cluster_is_really_secure(secure_hadoop, tmp_path):
    """Anonymous and ?user.name= WebHDFS requests are refused; Hadoop's own shell fails without
    a ticket and works with one."""
    listing = f"{secure_hadoop.webhdfs_url}/webhdfs/v1/tmp?op=LISTSTATUS"
    assert _status(listing) in (401, 403)
    assert _status(f"{listing}&user.name={secure_hadoop.user}") in (401, 403)
    for ticket in (False, True):
        done = subprocess.run(["hdfs", "dfs", "-ls", "/"], env=_env(secure_hadoop, tmp_path,
                                                                     ticket),
                              capture_output=True, text=True, timeout=120)
        assert (done.returncode == 0) == ticket, done.stdout + done.stderr
        if not ticket:
            assert "cannot authenticate via:[TOKEN, KERBEROS]" in done.stderr, done.stderr[-2000:]


def test_a_driver_with_a_ticket_does_every_hdfs_operation(secure_hadoop, tmp_path):
    base = f"hdfs:///user/{secure_hadoop.user}/kt-driver"
    result, done = run_job(_env(secure_hadoop, tmp_path, ticket=True), "driver_io", base)
    assert result.get("raised") is None, result
    assert result["read"] == "written by the driver" and result["same"]
    assert result["listing"] == ["b.txt", "up"]
    assert result["owner"] == secure_hadoop.user  # the principal's short name
    assert result["relative"] == f"/user/{secure_hadoop.user}/relative/x"
    assert "delegation=" not in done.stdout + done.stderr


def test_no_ticket_is_a_clear_error_before_any_node_starts(secure_hadoop, tmp_path):
    base = f"hdfs:///user/{secure_hadoop.user}/kt-none"
    env = _env(secure_hadoop, tmp_path, ticket=False)
    result, _ = run_job(env, "driver_io", base)
    assert result["raised"] == "FileSystemError", result
    namenode = secure_hadoop.default_fs.split("//")[1]
    for part in (namenode, "Kerberos", "kinit", "--keytab"):
        assert part in result["message"], result["message"]
    result, _ = run_job(env, "no_ticket_cluster", base)
    assert result["error"] == "FileSystemError" and "kinit" in result["message"], result
    assert result["jobs"] == 0


def test_standalone_executors_without_tickets_train_export_and_score(
        secure_hadoop, single_core_cluster, tmp_path):
    """Spark standalone's executors hold no Kerberos credentials: tfrecord.write's tasks,
    every TF node (TFRecords read, backup, export) and predict's tasks use the tokens the
    driver handed them; the nodes' token files are private and gone with the nodes."""
    base = f"hdfs:///user/{secure_hadoop.user}/kt-standalone"
    result, done = run_job(_env(secure_hadoop, tmp_path, ticket=True), "cluster",
                           single_core_cluster.master_url, base)
    if result.get("raised"):
        pytest.fail(f"{result['raised']}: {result['message']}\n{done.stderr[-6000:]}")
    assert result["read_back"] == 64
    nodes = result["nodes"]
    assert [n["rows"] for n in nodes] and sum(n["rows"] for n in nodes) == 64
    for node in nodes:
        assert node["ticket"] is None  # no Kerberos in the executors: only the token
        assert node["token_file_mode"] == "0o600" and node["token_file_in_task_dir"]
    assert result["latest"].endswith("/export/1") and result["backup"]
    assert result["node_files"] == ["0", "1"]
    assert result["scored"] == 16 and result["added"]
    assert result["token_files_left"] == []
    assert "delegation=" not in done.stdout + done.stderr
