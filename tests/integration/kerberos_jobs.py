"""Driver programs for the Kerberos tests: each runs in its own process, with the secure
cluster's HADOOP_CONF_DIR and whatever ticket cache (or none) the test gives it, and prints one
``RESULT {json}`` line.

    python kerberos_jobs.py driver_io hdfs:///user/me/kt
    python kerberos_jobs.py cluster spark://127.0.0.1:7077 hdfs:///user/me/kt
    python kerberos_jobs.py no_ticket_cluster hdfs:///user/me/kt
"""
from __future__ import annotations

import json
import os
import sys
import time

ROWS = 64


def driver_io(base: str) -> dict:
    """tfspark.fs on the driver before any SparkSession: a JVM of tfspark's own logs in."""
    import tfspark.fs as fs
    started = time.monotonic()
    fs.mkdirs(f"{base}/io")
    fs.write(f"{base}/io/a.txt", b"written by the driver", overwrite=True)
    local = os.path.join(os.environ["TFSPARK_TEST_TMP"], "upload")
    os.makedirs(os.path.join(local, "sub"), exist_ok=True)
    for name, data in (("one.bin", os.urandom(3 << 20)), ("sub/two.txt", b"two")):
        with open(os.path.join(local, name), "wb") as out:
            out.write(data)
    fs.upload(local, f"{base}/io/up", overwrite=True)
    download = os.path.join(os.environ["TFSPARK_TEST_TMP"], "download")
    fs.download(f"{base}/io/up", download, overwrite=True)
    same = all(open(os.path.join(local, n), "rb").read() == open(os.path.join(download, n),
                                                                  "rb").read()
               for n in ("one.bin", "sub/two.txt"))
    fs.rename(f"{base}/io/a.txt", f"{base}/io/b.txt")
    listing = sorted(os.path.basename(p) for p in fs.listdir(f"{base}/io"))
    owner = fs.status(f"{base}/io/b.txt").owner
    relative = fs.get_filesystem(base).native("relative/x")
    return {"read": fs.read_bytes(f"{base}/io/b.txt").decode(), "listing": listing,
            "same": same, "owner": owner, "relative": relative,
            "secs": time.monotonic() - started}


def _session(master: str):
    """The job's session; ``$TFSPARK_TEST_SPARK_CONF`` (JSON) adds settings (YARN's)."""
    from pyspark.sql import SparkSession
    builder = (SparkSession.builder.master(master).appName("tfspark-kerberos")
               .config("spark.driver.host", "127.0.0.1")
               .config("spark.driver.bindAddress", "127.0.0.1")
               .config("spark.ui.enabled", "false")
               .config("spark.executor.memory", "1g"))
    for key, value in json.loads(os.environ.get("TFSPARK_TEST_SPARK_CONF", "{}")).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def container_tokens(spark, base: str) -> list:
    """A plain Spark task on YARN (no tokens handed to it): tfspark.fs with the container's.
    (In client mode the ResourceManager renews them; in cluster mode with a keytab, executors'
    files hold the tokens Spark's AM obtained, which Spark renews in the executors' JVMs only,
    so a plain task there has them for one renew interval: 24 h by default, 20 s here.)"""
    def probe(_):
        import os
        import tfspark.fs as fs
        return [bool(os.environ.get("HADOOP_TOKEN_FILE_LOCATION")), fs.exists(base)]
    return spark.sparkContext.parallelize([0], 1).map(probe).collect()[0]


def main_fun(args, ctx):
    """TF-read training with a backup and an export, all on the Kerberized HDFS."""
    import os
    import tensorflow as tf
    import tfspark.fs as fs
    from tfspark.backup import backup_and_restore
    from tfspark.data import tfrecord_dataset
    from tfspark.export import export_saved_model
    token_file = os.environ.get("TFSPARK_TOKEN_FILE")
    mode = oct(os.stat(token_file).st_mode & 0o777) if token_file and os.path.exists(
        token_file) else None
    features = {"x": tf.io.FixedLenFeature([4], tf.float32),
                "y": tf.io.FixedLenFeature([], tf.float32)}
    dataset = tfrecord_dataset(args["records"], features, batch_size=8, ctx=ctx)
    rows = sum(int(tf.shape(b["y"])[0]) for b in dataset)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        model = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(4,))])
        model.compile("sgd", "mse")
    train = dataset.map(lambda b: (b["x"], b["y"])).repeat()
    model.fit(train, epochs=2, steps_per_epoch=3, verbose=0,
              callbacks=[backup_and_restore(args["backup"], ctx, delete_checkpoint=False)])
    published = export_saved_model(model, args["export"], ctx)
    fs.write(f"{args['base']}/nodes/{ctx.worker_num}", b"ok", overwrite=True)
    return {"rows": rows, "token_file_mode": mode, "published": published,
            "ticket": os.environ.get("KRB5CCNAME"),
            "token_file_in_task_dir": bool(token_file and "tfspark-task-" in token_file),
            "token_file": token_file}


def cluster(master: str, base: str, long_secs: str = "0") -> dict:
    """tfrecord.write on executors, TF nodes reading/backing up/exporting, predict on executors:
    every HDFS operation tfspark does, from processes with no Kerberos ticket of their own;
    then, for ``long_secs`` > 0, a node using HDFS for that long in the same application."""
    import tfspark.fs as fs
    from tfspark import TFCluster, export, predict, tfrecord
    spark = _session(master)
    rows = [(float(i), [float(i), 1.0, 0.5, -1.0]) for i in range(ROWS)]
    df = spark.createDataFrame(rows, "y float, x array<float>").repartition(2)
    tfrecord.write(df, f"{base}/records", mode="overwrite")
    read_back = tfrecord.read(spark, f"{base}/records").count()
    args = {"records": f"{base}/records", "backup": f"{base}/backup", "export": f"{base}/export",
            "base": base}
    results = TFCluster.run(spark.sparkContext, main_fun, args, 2,
                            master_node="chief").shutdown(timeout=300)
    latest = export.latest_version(f"{base}/export")
    on_yarn = container_tokens(spark, base) if master == "yarn" else None
    scored_df = predict(df.limit(16), latest, inputs={"dense_input": "x"})
    added = [c for c in scored_df.columns if c not in df.columns]
    scored = scored_df.collect()
    long = _run_long(spark, base, float(long_secs)) if float(long_secs) > 0 else None
    return {"long": long, "read_back": read_back, "nodes": results, "latest": latest,
            "scored": sum(1 for r in scored if r[added[0]] is not None), "added": added,
            "container_tokens": on_yarn,
            "backup": fs.exists(f"{base}/backup"),
            "node_files": sorted(os.path.basename(p) for p in fs.listdir(f"{base}/nodes")),
            "token_files_left": [r["token_file"] for r in results
                                 if r["token_file"] and os.path.exists(r["token_file"])]}


def long_fun(args, ctx):
    """HDFS reads and writes every few seconds for ``args["secs"]``, noting which token (its
    sequence number) the node's token file held each time."""
    import os
    import time
    import tfspark.fs as fs
    from tfspark.fs.tokens import decode_identifier, read_token_file
    ops, sequence_numbers, errors = 0, [], []
    deadline = time.monotonic() + args["secs"]
    while time.monotonic() < deadline:
        try:
            path = f"{args['base']}/long/{ops % 3}"
            fs.write(path, str(ops).encode(), overwrite=True)
            assert fs.read_bytes(path) == str(ops).encode()
            ops += 1
        except Exception as e:  # noqa: BLE001 - reported
            errors.append(str(e)[:500])
        token = read_token_file(os.environ["TFSPARK_TOKEN_FILE"])[0]
        sequence_numbers.append(decode_identifier(token).sequence_number)
        time.sleep(2)
    return {"ops": ops, "sequence_numbers": sorted(set(sequence_numbers)), "errors": errors}


def long_job(master: str, base: str, secs: str) -> dict:
    """A TF node that uses HDFS for longer than its tokens' renew interval and max lifetime."""
    return _run_long(_session(master), base, float(secs))


def _run_long(spark, base: str, secs: float) -> dict:
    from tfspark import TFCluster
    started = time.monotonic()
    results = TFCluster.run(spark.sparkContext, long_fun, {"base": base, "secs": secs},
                            1).shutdown(timeout=600)
    return dict(results[0], secs=time.monotonic() - started)


def _pss_on_staged(args, ctx):
    """PSS: each worker stages its shard of the TFRecords from HDFS, then trains on it."""
    import tensorflow as tf
    strategy = ctx.parameter_server_strategy()
    features = {"x": tf.io.FixedLenFeature([4], tf.float32),
                "y": tf.io.FixedLenFeature([], tf.float32)}
    pattern = ctx.staged_files("train")

    def dataset_fn(input_context):
        records = tf.data.TFRecordDataset(tf.data.Dataset.list_files(pattern, shuffle=False))
        return records.repeat().batch(8).map(
            lambda r: (lambda f: (f["x"], f["y"]))(tf.io.parse_example(r, features)))

    with strategy.scope():
        model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(1)])
        model.compile("sgd", "mse")
    history = model.fit(tf.keras.utils.experimental.DatasetCreator(dataset_fn), epochs=2,
                        steps_per_epoch=4, verbose=0)
    return {"epochs": len(history.history["loss"])}


def pss_staged(master: str, base: str) -> dict:
    """ParameterServerStrategy with stage_files on the Kerberized HDFS: the worker copies its
    shard with the token its driver handed it."""
    from tfspark import TFCluster, tfrecord
    spark = _session(master)
    rows = [(float(i), [float(i), 1.0, 0.5, -1.0]) for i in range(ROWS)]
    tfrecord.write(spark.createDataFrame(rows, "y float, x array<float>").repartition(2),
                   f"{base}/records", mode="overwrite")
    results = TFCluster.run(spark.sparkContext, _pss_on_staged, {}, 3, num_ps=1,
                            master_node="chief", stage_files={"train": f"{base}/records"}
                            ).shutdown(timeout=300)
    return {"results": results}


def refused_token(base: str) -> dict:
    """A node whose token the NameNode no longer knows (cancelled): the error it gets."""
    import subprocess
    import tfspark.fs as fs
    from tfspark.fs import jvm_tokens
    from tfspark.fs.tokens import write_token_file
    token = fs.delegation_tokens([base])[0]
    jvm, conf = jvm_tokens._jvm_and_conf()
    jtoken = jvm.org.apache.hadoop.security.token.Token()
    jtoken.decodeFromUrlString(token.url_string())
    jtoken.cancel(conf)
    path = os.path.join(os.environ["TFSPARK_TEST_TMP"], "cancelled.tokens")
    write_token_file(path, [token])
    env = dict(os.environ, TFSPARK_TOKEN_FILE=path)
    env.pop("KRB5CCNAME")
    probe = ("import tfspark.fs as fs, sys\n"
             "try:\n    fs.exists(sys.argv[1])\nexcept fs.FileSystemError as e:\n"
             "    print('ERROR', e)\n")
    done = subprocess.run([sys.executable, "-c", probe, base], env=env, capture_output=True,
                          text=True, timeout=120)
    return {"output": done.stdout + done.stderr, "service": token.service,
            "url_string_shown": token.url_string() in done.stdout + done.stderr}


def no_ticket_cluster(base: str) -> dict:
    """TFCluster.run without a ticket: the error, and no Spark job started."""
    from tfspark import TFCluster, TFSparkError
    spark = _session("local[2]")
    try:
        TFCluster.run(spark.sparkContext, main_fun, {"base": base}, 1)
    except TFSparkError as e:
        return {"error": type(e).__name__, "message": str(e),
                "jobs": len(spark.sparkContext.statusTracker().getJobIdsForGroup(None))}
    return {"error": None}


if __name__ == "__main__":
    job, *job_args = sys.argv[1:]
    try:
        result = globals()[job](*job_args)
    except Exception as e:  # the test reads the error
        import traceback
        traceback.print_exc()
        result = {"raised": type(e).__name__, "message": str(e)}
    print("RESULT " + json.dumps(result, default=str), flush=True)
