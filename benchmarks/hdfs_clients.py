"""Which HDFS client for Python on a Kerberized cluster: WebHDFS (HdfsCLI, tfspark's) vs
hdfs-native (a native HDFS RPC client, Rust, on PyPI).

    .venv/bin/pip install hdfs-native            # only for this measurement
    .venv/bin/python benchmarks/hdfs_clients.py [--files 8] [--mb-per-file 40] [--rounds 3]

Starts its own MIT KDC and Kerberized single-node HDFS (``tfspark.testing``), writes
``--files`` TFRecord files of MNIST rows (784 float32 + a label, ~3.2 KB a record) with
tfspark, then in one run, alternating the clients each round:

* WebHDFS with a delegation token (tfspark.fs: the NameNode redirects each read to the
  DataNode's HTTP server), the token from the driver's JVM;
* hdfs-native with the ticket cache (GSSAPI from the system's libgssapi, loaded at run time),
  reading blocks from the DataNode directly (its data transfer protocol);
* hdfs-native with only a token file (``HADOOP_TOKEN_FILE_LOCATION``, as in a YARN
  container), in a child process without a ticket: can it, and how fast.

Prints MB/s per client and round, and the ratios to WebHDFS (median of the rounds). What each
can authenticate with is printed too (a failure is a result, not a crash).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # tf-keras, as on tfspark's nodes
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def _records(count: int) -> bytes:
    """``count`` TFRecords of MNIST-sized tf.train.Examples, as TF writes them."""
    import numpy as np
    import tensorflow as tf
    rng = np.random.default_rng(0)
    with tempfile.NamedTemporaryFile(suffix=".tfrecord") as tmp:
        with tf.io.TFRecordWriter(tmp.name) as writer:
            for i in range(count):
                writer.write(tf.train.Example(features=tf.train.Features(feature={
                    "image": tf.train.Feature(float_list=tf.train.FloatList(
                        value=rng.random(784, dtype=np.float32))),
                    "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 10]))})
                ).SerializeToString())
        with open(tmp.name, "rb") as f:
            return f.read()


def _read_all(open_file, paths) -> int:
    """Bytes read from every path, 8 MB at a time, through ``open_file(path)``."""
    total = 0
    for path in paths:
        with open_file(path) as f:
            while True:
                chunk = f.read(8 << 20)
                if not chunk:
                    break
                total += len(chunk)
    return total


def _read_webhdfs(paths) -> int:
    import tfspark.fs as fs
    return _read_all(lambda path: fs.open(path, "rb"), paths)


def _read_native(client, paths) -> int:
    return _read_all(client.read, paths)


def _native_child(url: str, paths_json: str) -> int:
    """``--_native-read``: hdfs-native in a process of its own, with only a token file."""
    from hdfs_native import Client
    try:
        started = time.perf_counter()
        total = _read_native(Client(url), json.loads(paths_json))
        print(json.dumps({"bytes": total, "secs": time.perf_counter() - started}))
    except Exception as e:  # noqa: BLE001 - a failure is a result
        print(json.dumps({"error": f"{type(e).__name__}: {e}"[:300]}))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--mb-per-file", type=float, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from tfspark.testing.hadoop import HadoopCluster
    from tfspark.testing.kdc import KDC

    base = tempfile.mkdtemp(prefix="tfspark-hdfs-clients-")
    with KDC(os.path.join(base, "kdc")) as kdc, \
            HadoopCluster(os.path.join(base, "hadoop"), yarn=False, kdc=kdc) as cluster:
        os.environ.update(cluster.env())
        os.environ.update(cluster.kinit(os.path.join(base, "krb5cc")))
        import tfspark.fs as fs
        from tfspark.fs.tokens import write_token_file
        per_file = max(1, int(args.mb_per_file * 1e6 / 3200))
        data = _records(per_file)
        paths = [f"{cluster.default_fs}/user/{cluster.user}/bench/part-{i:03d}.tfrecord"
                 for i in range(args.files)]
        for path in paths:
            fs.write(path, data, overwrite=True)
        total_mb = len(data) * len(paths) / 1e6
        print(f"{len(paths)} files, {total_mb:.0f} MB of TFRecords on a Kerberized HDFS")

        from hdfs_native import Client
        native = Client(cluster.default_fs)  # GSSAPI finds the ticket via KRB5CCNAME
        natives = [p.split(cluster.default_fs, 1)[1] for p in paths]
        token_file = os.path.join(base, "tokens")
        write_token_file(token_file, fs.delegation_tokens([cluster.default_fs]))
        child_env = {k: v for k, v in os.environ.items() if k != "KRB5CCNAME"}
        child_env.update(HADOOP_TOKEN_FILE_LOCATION=token_file,
                         KRB5CCNAME=f"FILE:{os.path.join(base, 'no-ticket')}")

        rates = {"webhdfs+token": [], "native+ticket": [], "native+token-file": []}
        notes = {}
        for round_ in range(args.rounds):
            started = time.perf_counter()
            assert _read_webhdfs(paths) == len(data) * len(paths)
            rates["webhdfs+token"].append(total_mb / (time.perf_counter() - started))

            started = time.perf_counter()
            assert _read_native(native, natives) == len(data) * len(paths)
            rates["native+ticket"].append(total_mb / (time.perf_counter() - started))

            done = subprocess.run([sys.executable, __file__, "--_native-read",
                                   cluster.default_fs, json.dumps(natives)], env=child_env,
                                  capture_output=True, text=True, timeout=600)
            result = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() \
                else {"error": done.stderr[-300:]}
            if "error" in result:
                notes["native+token-file"] = result["error"]
            else:
                rates["native+token-file"].append(total_mb / result["secs"])
            print(f"round {round_ + 1}: " + ", ".join(
                f"{name} {values[-1]:.0f} MB/s" for name, values in rates.items() if values))
        dataset_rates = _dataset_rates(paths, data, base, args.rounds)
        base_rate = statistics.median(rates["webhdfs+token"])
        print("\nmedian MB/s and ratio to WebHDFS (tfspark today):")
        for name, values in rates.items():
            if values:
                median = statistics.median(values)
                print(f"  {name:18s} {median:8.0f} MB/s   x{median / base_rate:.2f}")
            else:
                print(f"  {name:18s}   failed: {notes.get(name)}")
        print("\ntfspark.data.tfrecord_dataset (batch 256, parsed), records/s (median):")
        for name, values in dataset_rates.items():
            local = statistics.median(dataset_rates["fit over local" if name.startswith("fit")
                                                    else "local"])
            median = statistics.median(values)
            print(f"  {name:18s} {median:10.0f} rec/s   x{median / local:.2f} of local")
    return 0


def _dataset_rates(paths, data: bytes, base: str, rounds: int) -> dict:
    """What a TF-read job gets: records/s of tfspark.data.tfrecord_dataset over the HDFS files
    (WebHDFS download ahead + parse) and over local copies of them (no HDFS client at all: the
    bound for any faster client)."""
    import tensorflow as tf
    from tfspark.data import tfrecord_dataset
    local_dir = os.path.join(base, "local")
    os.makedirs(local_dir, exist_ok=True)
    for i in range(len(paths)):
        with open(os.path.join(local_dir, f"part-{i:03d}.tfrecord"), "wb") as out:
            out.write(data)
    features = {"image": tf.io.FixedLenFeature([784], tf.float32),
                "label": tf.io.FixedLenFeature([], tf.int64)}
    hdfs_dir = paths[0].rsplit("/", 1)[0]
    rates: dict = {"local": [], "hdfs (webhdfs)": []}
    for _ in range(rounds):
        for name, path in (("local", f"file://{local_dir}"), ("hdfs (webhdfs)", hdfs_dir)):
            started, count = time.perf_counter(), 0
            for batch in tfrecord_dataset(path, features, batch_size=256, shuffle_files=False):
                count += int(batch["label"].shape[0])
            rates[name].append(count / (time.perf_counter() - started))
    rates.update(_training_rates(f"file://{local_dir}", hdfs_dir, features, rounds, count))
    return rates


def _training_rates(local: str, hdfs: str, features: dict, rounds: int, records: int) -> dict:
    """What the user waits for: records/s of one epoch of the MNIST example's model
    (``model.fit``, batch 256) reading the TFRecords from local copies and from HDFS. Equal
    rates mean the HDFS client is not what bounds TF-read training."""
    import tensorflow as tf
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "examples", "mnist"))
    from mnist_spark import build_model
    from tfspark.data import tfrecord_dataset
    model = build_model(tf)
    rates: dict = {"fit over local": [], "fit over hdfs": []}
    for round_ in range(rounds + 1):  # the first round builds and traces: not counted
        for name, path in (("fit over local", local), ("fit over hdfs", hdfs)):
            dataset = tfrecord_dataset(path, features, batch_size=256, shuffle_files=False)
            started = time.perf_counter()
            model.fit(dataset.map(lambda b: (b["image"], b["label"])), epochs=1, verbose=0)
            if round_:
                rates[name].append(records / (time.perf_counter() - started))
    return rates


if __name__ == "__main__":
    if sys.argv[1:2] == ["--_native-read"]:
        sys.exit(_native_child(*sys.argv[2:4]))
    sys.exit(main())
