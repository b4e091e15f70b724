"""MNIST example, step 1: write the MNIST (or digits) train/test sets as TFRecords with Spark.

    python examples/mnist/mnist_data_setup.py --output mnist_data            # local, digits
    python examples/mnist/mnist_data_setup.py --mnist ~/mnist.npz --output hdfs:///data/mnist
    spark-submit --master spark://HOST:7077 examples/mnist/mnist_data_setup.py --output ...

Data: real MNIST when ``--mnist PATH`` names the standard ``mnist.npz`` (as Keras downloads it)
or a folder holding the four IDX files (``train-images-idx3-ubyte.gz`` & co.); its own 60k/10k
train/test split is kept.  Without ``--mnist`` (no download is possible offline), scikit-learn's
bundled 8x8 digits (1,797 images) are upscaled to 28x28 (each pixel a 3x3 block, 2-pixel border)
and split 80/20 with a fixed seed: 1,438 train and 359 test images.

Writes ``<output>/train`` and ``<output>/test``: TFRecord ``Example`` files with ``image``
(784 floats in [0, 1]) and ``label`` (int64), via :func:`tfspark.tfrecord.write` (HDFS or
local).  ``--format csv`` also writes ``<output>/csv/{train,test}`` (label, then 784 pixels).
"""
import argparse
import gzip
import os
import struct

import numpy as np

from tfspark import fs, tfrecord
from tfspark.session import get_session, master_of

IDX_FILES = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
             "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}


def _read_idx(path: str) -> np.ndarray:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        _, dtype, ndim = struct.unpack(">HBB", f.read(4))
        if dtype != 0x08:
            raise ValueError(f"{path}: IDX data type {dtype:#x} is not unsigned byte")
        shape = struct.unpack(">" + "I" * ndim, f.read(4 * ndim))
        return np.frombuffer(f.read(), np.uint8).reshape(shape)


def load_mnist(path: str):
    """(x_train, y_train, x_test, y_test) from mnist.npz or a folder of the four IDX files."""
    if os.path.isdir(path):
        arrays = {}
        for key, name in IDX_FILES.items():
            candidates = [os.path.join(path, name + ext) for ext in (".gz", "")]
            found = [c for c in candidates if os.path.exists(c)]
            if not found:
                raise FileNotFoundError(f"{path} has neither {name}.gz nor {name}")
            arrays[key] = _read_idx(found[0])
    else:
        with np.load(path) as npz:
            arrays = {key: npz[key] for key in IDX_FILES}
    x_train, x_test = (arrays[k].reshape(len(arrays[k]), 784).astype("float32") / 255.0
                       for k in ("x_train", "x_test"))
    return x_train, arrays["y_train"].astype("int64"), x_test, arrays["y_test"].astype("int64")


def load_digits(test_fraction: float = 0.2, seed: int = 42):
    """scikit-learn's 8x8 digits as 28x28 images in [0, 1], split with a fixed seed."""
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    images = np.kron(digits.images / 16.0, np.ones((3, 3)))             # 8x8 -> 24x24
    images = np.pad(images, ((0, 0), (2, 2), (2, 2)))                   # -> 28x28
    x = images.reshape(len(images), 784).astype("float32")
    y = digits.target.astype("int64")
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(len(x) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def to_dataframe(spark, x: np.ndarray, y: np.ndarray, partitions: int):
    """The images and labels as a DataFrame of ``partitions`` partitions of equal sizes (to a
    row: TFRecord shards read by the TF workers then hold equally many batches).

    Classic Spark ships the rows inside its tasks: in slices of about 256 KB of pixels each,
    every task stays under the 1 MB over which Spark warns (the digits in 2 slices were 5 MB
    tasks); row ``i`` then goes to partition ``i % partitions``."""
    rows = [(x[i].tolist(), int(y[i])) for i in range(len(x))]
    schema = "image array<float>, label long"
    try:
        sc = spark.sparkContext
    except Exception:  # noqa: BLE001 - Spark Connect: the rows travel with the plan
        return spark.createDataFrame(rows, schema).repartition(partitions)
    slices = max(partitions, -(-x.nbytes // (256 << 10)))
    dealt = sc.parallelize(list(enumerate(rows)), slices).partitionBy(
        partitions, lambda i: i % partitions).values()
    return spark.createDataFrame(dealt, schema)


def write_csv(df, path: str) -> None:
    """label, then the 784 pixels, one image per line (no header)."""
    from pyspark.sql import functions as F
    pixels = [F.col("image")[i].alias(f"p{i}") for i in range(784)]
    df.select("label", *pixels).write.mode("overwrite").csv(path)




def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="mnist_data",
                        help="output directory, local or hdfs:// (gets train/ and test/)")
    parser.add_argument("--mnist", default=None,
                        help="mnist.npz or a folder with the IDX files (default: sklearn digits)")
    parser.add_argument("--format", choices=["tfr", "csv"], default="tfr",
                        help="csv: also write CSV copies under <output>/csv")
    parser.add_argument("--num_partitions", type=int, default=4,
                        help="TFRecord files per set (>= the number of TF workers)")
    parser.add_argument("--seed", type=int, default=42, help="train/test split of the digits")
    parser.add_argument("--master", default=None,
                        help="Spark master when not run by spark-submit (default: local[2])")
    parser.add_argument("--remote", default=None,
                        help="a Spark Connect server (sc://HOST:15002) to run on instead")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.mnist:
        x_train, y_train, x_test, y_test = load_mnist(os.path.expanduser(args.mnist))
        source = f"MNIST from {args.mnist}"
    else:
        x_train, y_train, x_test, y_test = load_digits(seed=args.seed)
        source = "scikit-learn digits upscaled to 28x28 (no --mnist given)"
    spark = get_session("tfspark-mnist-data-setup", args.master)
    print(f"master: {master_of(spark)}", flush=True)
    try:
        for name, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
            df = to_dataframe(spark, x, y, args.num_partitions)
            target = fs.join(args.output, name)
            tfrecord.write(df, target, mode="overwrite")
            if args.format == "csv":
                write_csv(df, fs.join(args.output, "csv", name))
            print(f"wrote {len(x)} {name} images to {target}", flush=True)
        print(f"data: {source}")
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
