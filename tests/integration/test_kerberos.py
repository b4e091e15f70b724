"""tfspark on a Kerberized HDFS + YARN, against a real MIT KDC (the ``secure_hadoop`` fixture).

Drivers run as their own processes (``kerberos_jobs.py``) with the secure cluster's settings
and a ticket cache from ``kinit``, or none; Spark's executors run without any ticket, so every
HDFS operation they and the TF nodes do proves the delegation tokens tfspark hands them.
The README's YARN walkthrough runs on this cluster too (``test_yarn_readme.py``: client and
cluster deploy mode, the driver in YARN's container there).
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


def test_a_node_whose_token_was_cancelled_gets_an_error_naming_it(secure_hadoop, tmp_path):
    base = f"hdfs:///user/{secure_hadoop.user}/kt-refused"
    result, _ = run_job(_env(secure_hadoop, tmp_path, ticket=True), "refused_token", base)
    output = result["output"]
    assert output.startswith("ERROR could not check"), output
    for part in (f"the HDFS delegation token for {result['service']}",
                 f"owner {secure_hadoop.user_principal}", "renewable until",
                 "unknown to the NameNode (cancelled"):
        assert part in output, output
    assert not result["url_string_shown"] and "delegation=" not in output


def test_a_job_outlives_its_tokens_renew_interval_and_max_lifetime(
        secure_hadoop, single_core_cluster, tmp_path):
    """Tokens renewed every 20 s at the latest and dead after 60 s: the driver renews its own
    token and, before its max lifetime, obtains a new one and hands it to the node, which
    keeps reading and writing HDFS for 75 s."""
    base = f"hdfs:///user/{secure_hadoop.user}/kt-long"
    result, done = run_job(_env(secure_hadoop, tmp_path, ticket=True), "long_job",
                           single_core_cluster.master_url, base, 75)
    if result.get("raised"):
        pytest.fail(f"{result['raised']}: {result['message']}\n{done.stderr[-6000:]}")
    assert result["errors"] == [] and result["ops"] >= 20, result
    assert len(result["sequence_numbers"]) >= 2, result  # re-issued while it ran
    assert result["secs"] > 75


def test_standalone_executors_without_tickets_train_export_and_score(
        secure_hadoop, single_core_cluster, tmp_path):
    """Spark standalone's executors hold no Kerberos credentials: tfrecord.write's tasks,
    every TF node (TFRecords read, backup, export) and predict's tasks use the tokens the
    driver handed them; the nodes' token files are private and gone with the nodes."""
    base = f"hdfs:///user/{secure_hadoop.user}/kt-standalone"
    result, done = run_job(_env(secure_hadoop, tmp_path, ticket=True), "cluster",
                           single_core_cluster.master_url, base)
    assert_trained_exported_and_scored(result, done)
    for node in result["nodes"]:
        assert node["ticket"] is None  # no Kerberos in the executors: only the token


def assert_trained_exported_and_scored(result, done):
    if result.get("raised"):
        pytest.fail(f"{result['raised']}: {result['message']}\n{done.stderr[-6000:]}")
    assert result["read_back"] == 64
    nodes = result["nodes"]
    assert [n["rows"] for n in nodes] and sum(n["rows"] for n in nodes) == 64
    for node in nodes:
        assert node["token_file_mode"] == "0o600" and node["token_file_in_task_dir"]
    assert result["latest"].endswith("/export/1") and result["backup"]
    assert result["node_files"] == ["0", "1"]
    assert result["scored"] == 16 and result["added"]
    assert result["token_files_left"] == []
    assert "delegation=" not in done.stdout + done.stderr


def _yarn_env(cluster, tmp_path) -> dict:
    """A driver on the secure YARN that logs in from the user's keytab (Spark then re-obtains
    the application's tokens before they expire: each lives at most 60 s here)."""
    env = _env(cluster, tmp_path, ticket=True)
    conf = dict(cluster.spark_yarn_conf(), **{
        "spark.kerberos.principal": cluster.user_principal,
        "spark.kerberos.keytab": str(cluster.user_keytab),
        "spark.executor.instances": "2", "spark.executor.cores": "1",
        "spark.executor.memory": "768m", "spark.yarn.am.memory": "512m"})
    env["TFSPARK_TEST_SPARK_CONF"] = json.dumps(conf)
    return env


def test_yarn_client_mode_nodes_and_tasks_use_the_applications_tokens(secure_hadoop, tmp_path):
    """On YARN with --principal/--keytab: the job's every HDFS operation, then a node using
    HDFS for 65 s, past its tokens' max lifetime (60 s): Spark re-obtains them from the keytab
    and the driver hands the new ones to the node."""
    base = f"hdfs:///user/{secure_hadoop.user}/kt-yarn-client"
    result, done = run_job(_yarn_env(secure_hadoop, tmp_path), "cluster", "yarn", base, "65")
    assert_trained_exported_and_scored(result, done)
    assert result["container_tokens"] == [True, True]  # a plain task, YARN's token file
    long = result["long"]
    assert long["errors"] == [] and long["ops"] >= 15 and long["secs"] > 65, long
    assert len(long["sequence_numbers"]) >= 2, long  # re-issued while it ran


def test_pss_workers_stage_their_shards_from_the_secure_hdfs(secure_hadoop, tmp_path):
    """stage_files under ParameterServerStrategy: the worker's process copies its TFRecord
    shard from the Kerberized HDFS with its handed token (local[3]: Python has no Kerberos of
    its own, so a token is all any node can use)."""
    base = f"hdfs:///user/{secure_hadoop.user}/kt-pss"
    result, done = run_job(_env(secure_hadoop, tmp_path, ticket=True), "pss_staged", "local[3]",
                           base)
    if result.get("raised"):
        pytest.fail(f"{result['raised']}: {result['message']}\n{done.stderr[-6000:]}")
    assert result["results"][1] == {"epochs": 2}, result  # the chief's model.fit
