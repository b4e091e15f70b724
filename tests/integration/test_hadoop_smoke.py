"""The test Hadoop cluster works: HDFS and YARN answer, and Spark reads and writes HDFS.

Spark on YARN (spark-submit in client and cluster mode, writing to HDFS) runs in
test_yarn_readme.py, with the README's own commands."""
import json
import os
import subprocess
import sys
import textwrap
import urllib.request
import uuid

import pytest

from tfspark import fs

TIMEOUT = 420

LOCAL_JOB = textwrap.dedent("""\
    import sys
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master("local[2]").appName("tfspark-local-hdfs")
             .config("spark.ui.enabled", "false").getOrCreate())
    df = spark.range(100).selectExpr("id", "id * id AS square")
    df.write.parquet(sys.argv[1])
    back = spark.read.parquet(sys.argv[1])
    print("RESULT", back.count(), back.agg({"square": "sum"}).first()[0])
    spark.stop()
""")


def _run(cmd, env, cwd):
    proc = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT)
    tail = "\n".join(proc.stdout.splitlines()[-80:])
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}:\n{tail}"
    return proc.stdout


def _spark_env(cluster):
    env = dict(os.environ, **cluster.env(), PYSPARK_PYTHON=sys.executable,
               SPARK_LOCAL_IP="127.0.0.1")
    env.pop("HADOOP_USER_NAME", None)
    env.pop("SPARK_HOME", None)
    return env


def test_hdfs_and_yarn_answer(hadoop_cluster):
    with urllib.request.urlopen(f"{hadoop_cluster.webhdfs_url}/webhdfs/v1/?op=GETFILESTATUS"
                                "&user.name=nobody", timeout=10) as resp:
        assert json.load(resp)["FileStatus"]["type"] == "DIRECTORY"
    with urllib.request.urlopen(f"{hadoop_cluster.rm_web_url}/ws/v1/cluster/nodes",
                                timeout=10) as resp:
        nodes = json.load(resp)["nodes"]["node"]
    assert [n["state"] for n in nodes] == ["RUNNING"]
    assert all(hadoop_cluster.running().values())


def test_spark_local_mode_reads_and_writes_hdfs(hdfs_cluster, hadoop_env, tmp_path):
    job = tmp_path / "local_job.py"
    job.write_text(LOCAL_JOB)
    out = f"{hdfs_cluster.default_fs}/tmp/local_{uuid.uuid4().hex[:8]}.parquet"
    output = _run([sys.executable, str(job), out], _spark_env(hdfs_cluster), tmp_path)
    assert "RESULT 100 328350" in output, output[-3000:]
    assert any(n.endswith(".parquet") for n in fs.listdir(out))


def test_nodemanager_file_system_sets_the_modes_hadoops_own_does(tmp_path):
    """The test NodeManager's NioChmodLocalFs (chmod in-process, as libhadoop) leaves the same
    modes as Hadoop's LocalFs (a forked chmod), sticky bit included, and reports a missing path
    the same way."""
    from tfspark.testing import hadoop
    lib = hadoop.ensure_jars()
    if not os.access(os.path.join(hadoop.java_home(), "bin", "javac"), os.X_OK):
        pytest.skip("no javac: the NodeManager keeps Hadoop's own LocalFs")
    classes = hadoop.nio_chmod_classes(lib)
    check = os.path.join(os.path.dirname(__file__), "data", "SetPermissions.java")
    wanted = {"file": 0o555, "private": 0o640, "dir": 0o755, "sticky": 0o1777}
    found = {}
    for impl in (hadoop.NIO_CHMOD_CLASS, "org.apache.hadoop.fs.local.LocalFs"):
        base = tmp_path / impl.rsplit(".", 1)[1]
        for name in ("dir", "sticky"):
            (base / name).mkdir(parents=True)
        for name in ("file", "private"):
            (base / name).write_text("x")
        args = [str(a) for name, mode in wanted.items() for a in (base / name, f"{mode:o}")]
        done = subprocess.run(
            [os.path.join(hadoop.java_home(), "bin", "java"), "-cp", f"{classes}:{lib}/*", check,
             impl, *args, str(base / "gone"), "644"],
            capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr[-3000:]
        assert f"file system: {impl}" in done.stdout and f"missing {base / 'gone'}" in done.stdout
        found[impl] = {name: os.stat(base / name).st_mode & 0o7777 for name in wanted}
    assert found[hadoop.NIO_CHMOD_CLASS] == found["org.apache.hadoop.fs.local.LocalFs"] == wanted


def test_start_failure_names_the_daemon_and_shows_its_log(tmp_path):
    from tfspark.testing.hadoop import HadoopCluster, HadoopClusterError
    cluster = HadoopCluster(tmp_path / "bad", yarn=False, daemon_heap="1k")  # JVM refuses
    with pytest.raises(HadoopClusterError) as err:
        cluster.start()
    assert "formatting the NameNode failed" in str(err.value)
    assert "heap" in str(err.value).lower()
    cluster.stop()  # a second stop is harmless


@pytest.mark.slow
def test_command_line_start_status_stop(tmp_path):
    script = os.path.join(os.path.dirname(__file__), "..", "..", "conf", "hadoop", "cluster.sh")
    env = dict(os.environ, PYTHON=sys.executable)
    base = str(tmp_path / "cli")
    try:
        started = _run([script, "start", "--dir", base, "--no-yarn"], env, tmp_path)
        assert f"export HADOOP_CONF_DIR={base}/conf" in started
        status = _run([script, "status", "--dir", base], env, tmp_path)
        assert "namenode: running" in status and "datanode: running" in status
    finally:
        _run([script, "stop", "--dir", base], env, tmp_path)
    stopped = subprocess.run([script, "status", "--dir", base], env=env, capture_output=True,
                             text=True, timeout=60)
    assert stopped.returncode == 1 and "no cluster state" in stopped.stderr
