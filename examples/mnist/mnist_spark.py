"""MNIST example, step 2: train a small Keras CNN on N TF workers (MultiWorkerMirroredStrategy).

    python examples/mnist/mnist_spark.py --images_labels mnist_data/train --export_dir mnist_export
    spark-submit --master spark://HOST:7077 --conf spark.executor.cores=2 \\
        examples/mnist/mnist_spark.py --cluster_size 2 --input_mode spark \\
        --images_labels hdfs:///data/mnist/train --export_dir hdfs:///models/mnist

``--batch_size`` is per worker: one step trains on ``batch_size`` rows from every worker (global
batch ``batch_size x cluster_size``), and every row is trained on exactly once per epoch.

``--input_mode spark``: Spark reads the TFRecords as a DataFrame (:func:`tfspark.tfrecord.read`)
and feeds it to the workers with ``cluster.train(df, epochs)``; each worker trains on its share
(``ctx.get_data_feed().dataset(batch_size, label="label")``, in a fresh random order every
epoch). The feeding job needs a free task slot beside the TF nodes' (e.g.
``spark.executor.cores=2``).

``--input_mode tf``: each worker reads its own shard of the TFRecord files directly
(:func:`tfspark.data.tfrecord_dataset`, HDFS through WebHDFS; file order reshuffled every epoch,
records through a shuffle buffer). No ``repeat()``/``steps_per_epoch``: each epoch reads every
record of the shard once; a worker whose shard is smaller idles on empty batches at the end.

The chief exports the trained model as the next numbered SavedModel version under
``--export_dir`` (:func:`tfspark.export.export_saved_model`); the other workers never write
there.  ``--model_dir`` keeps a backup (``ctx.backup_and_restore``) and per-epoch weights, and
``--log_dir`` TensorBoard logs; on HDFS all are written locally and published there by the chief
at every epoch end. If a TF node dies (its process killed, its executor lost), tfspark restarts
the TF cluster up to ``--max_restarts`` times and training resumes after the last finished epoch;
if the job fails anyway, rerun the same command with the same ``--model_dir`` and it does the
same (``--crash_after_epoch N`` tries both out: the chief's process dies right after epoch N is
backed up).
"""
import argparse
import math
import os
import time


from tfspark import InputMode, TFCluster, export, tfrecord
from tfspark.session import get_session, master_of


def build_model(tf):
    """Reshape 28x28x1 -> Conv 16 -> MaxPool -> Flatten -> Dense 64 -> Dense 10 (softmax)."""
    model = tf.keras.Sequential([
        tf.keras.Input((784,), name="image"),
        tf.keras.layers.Reshape((28, 28, 1)),
        tf.keras.layers.Conv2D(16, 3, activation="relu"),
        tf.keras.layers.MaxPooling2D(),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(64, activation="relu"),
        tf.keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=tf.keras.optimizers.Adam(0.002),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def main_fun(args, ctx):
    """Runs on every TF node under MWMS; on the chief (the coordinator) under PSS."""
    import tensorflow as tf
    from tfspark import data

    if args.strategy == "ps":
        return coordinate(args, ctx, tf)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    if args.input_mode == "spark":
        feed = ctx.get_data_feed()
        dataset = feed.dataset(args.batch_size, label="label")   # one epoch of this node's share
        epochs = feed.num_epochs
        if ctx.is_chief:
            print(f"{sum(feed.rows_per_node)} training rows: {feed.steps_per_epoch} steps per "
                  f"epoch of global batch {args.batch_size * ctx.num_workers}", flush=True)
    else:
        features = {"image": tf.io.FixedLenFeature([784], tf.float32),
                    "label": tf.io.FixedLenFeature([], tf.int64)}
        records = data.tfrecord_dataset(args.images_labels, features, ctx=ctx)  # this shard
        dataset = (records.map(lambda r: (r["image"], r["label"]))
                   .shuffle(2048).batch(args.batch_size))    # each record once per epoch
        epochs = args.epochs
    # (tfspark marks both datasets as this node's own share: model.fit takes whole per-worker
    # batches of it instead of splitting them over the workers)
    with strategy.scope():
        model = build_model(tf)
    return fit_and_export(args, ctx, model, dataset, epochs, None,
                          _checkpoint_callbacks(args, ctx, tf))


def _checkpoint_callbacks(args, ctx, tf):
    """Under --model_dir: a backup to resume from (a rerun after a failure continues after the
    last finished epoch) and per-epoch weights; TensorBoard logs. On HDFS via local mirrors."""
    callbacks = []
    if args.model_dir:
        model_dir = ctx.absolute_path(args.model_dir)
        callbacks.append(ctx.backup_and_restore(f"{model_dir}/backup"))
        weights = f"{model_dir}/weights"
        ckpt_dir = export.local_mirror(weights, ctx)   # local; HDFS: a local mirror
        callbacks.append(tf.keras.callbacks.ModelCheckpoint(
            os.path.join(ckpt_dir, "weights-{epoch:02d}"), save_weights_only=True))
        if export.is_remote(weights):
            callbacks.append(export.PublishDirCallback(ckpt_dir, weights, ctx))
    if args.crash_after_epoch and ctx.is_chief:
        callbacks.append(_CrashAfterEpoch(tf, args.crash_after_epoch))
    if args.log_dir:
        log_dir = export.local_mirror(args.log_dir, ctx)
        callbacks.append(tf.keras.callbacks.TensorBoard(log_dir))
        if export.is_remote(ctx.absolute_path(args.log_dir)):
            callbacks.append(export.PublishDirCallback(log_dir, ctx.absolute_path(args.log_dir),
                                                       ctx))
    return callbacks


def _CrashAfterEpoch(tf, epoch):
    """Kill this process (as the OOM killer would) at the end of ``epoch`` (1-based), after the
    callbacks before it -- the backup among them -- have run."""
    class CrashAfterEpoch(tf.keras.callbacks.Callback):
        def on_epoch_end(self, index, logs=None):
            if index + 1 == epoch:
                print(f"--crash_after_epoch {epoch}: killing this process", flush=True)
                os.kill(os.getpid(), 9)
    return CrashAfterEpoch()


def fit_and_export(args, ctx, model, data, epochs, steps_per_epoch, callbacks):
    from tfspark import export
    started = time.time()
    # no verbose=: the driver shows one progress line per epoch (TFCluster.run(progress=True))
    history = model.fit(data, epochs=epochs, steps_per_epoch=steps_per_epoch,
                        callbacks=callbacks)
    train_secs = time.time() - started
    exported = export.export_saved_model(model, args.export_dir, ctx) if args.export_dir else None
    return {"loss": history.history["loss"], "accuracy": history.history["accuracy"],
            "export": exported, "train_secs": train_secs}


def coordinate(args, ctx, tf):
    """ParameterServerStrategy on the chief: the ps and workers run TF servers (tfspark starts
    them); the workers' dataset_fn reads data on their local disks."""
    strategy = ctx.parameter_server_strategy()
    if args.input_mode == "spark":   # fed rows, spilled as TFRecords on each worker
        feed = ctx.get_data_feed()
        dataset_fn = feed.dataset_fn(args.batch_size, label="label")
        epochs, steps_per_epoch = feed.num_epochs, feed.steps_per_epoch
        print(f"{sum(feed.rows_per_node)} training rows: {steps_per_epoch} steps per epoch of "
              f"batch {args.batch_size}", flush=True)
    else:                            # each worker's shard of the files, staged by tfspark
        features = {"image": tf.io.FixedLenFeature([784], tf.float32),
                    "label": tf.io.FixedLenFeature([], tf.int64)}
        pattern = ctx.staged_files("train")

        def dataset_fn(input_context):
            files = tf.data.Dataset.list_files(pattern, shuffle=True)
            records = tf.data.TFRecordDataset(files).shuffle(2048).repeat()
            return records.batch(args.batch_size, drop_remainder=True).map(
                lambda r: (lambda f: (f["image"], f["label"]))(tf.io.parse_example(r, features)))
        epochs, steps_per_epoch = args.epochs, args.steps_per_epoch
    with strategy.scope():
        model = build_model(tf)
    return fit_and_export(args, ctx, model, tf.keras.utils.experimental.DatasetCreator(
        dataset_fn), epochs, steps_per_epoch, _checkpoint_callbacks(args, ctx, tf))




def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cluster_size", type=int, default=2, help="number of TF workers")
    parser.add_argument("--input_mode", choices=["spark", "tf"], default="spark")
    parser.add_argument("--strategy", choices=["mwms", "ps"], default="mwms",
                        help="ps: ParameterServerStrategy with --num_ps parameter servers, a "
                             "chief (coordinator) and --cluster_size workers")
    parser.add_argument("--num_ps", type=int, default=1)
    parser.add_argument("--images_labels", default="mnist_data/train",
                        help="TFRecord directory written by mnist_data_setup.py")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch_size", type=int, default=32,
                        help="rows per worker per step (global batch: batch_size x workers)")
    parser.add_argument("--model_dir", default=None,
                        help="backup to resume from (rerun the same command after a failure "
                             "to continue) and per-epoch weights; local, shared or HDFS")
    parser.add_argument("--export_dir", default="mnist_export",
                        help="SavedModel versions go to <export_dir>/<n> (local or HDFS)")
    parser.add_argument("--log_dir", default=None, help="TensorBoard logs (local or HDFS)")
    parser.add_argument("--max_restarts", type=int, default=2,
                        help="restarts of the TF cluster after a node dies (0: fail at once)")
    parser.add_argument("--crash_after_epoch", type=int, default=0,
                        help="to try out resuming: the chief's process dies after this epoch")
    parser.add_argument("--tensorboard", action="store_true",
                        help="serve TensorBoard from the chief on a local --log_dir")
    parser.add_argument("--master", default=None,
                        help="Spark master when not run by spark-submit "
                             "(default: local[cluster_size + 1])")
    parser.add_argument("--remote", default=None,
                        help="a Spark Connect server (sc://HOST:15002) to run on instead")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for training")
    parser.add_argument("--mlflow", nargs="?", const=True, default=None, metavar="EXPERIMENT",
                        help="track the job in MLflow (pip install tfspark[mlflow]): params, "
                             "each epoch's metrics and the exported model, in one run of "
                             "EXPERIMENT (default: MLflow's); MLFLOW_TRACKING_URI says where")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    # locally: one slot per TF node, plus one for the job that feeds them (InputMode.SPARK)
    pss = args.strategy == "ps"
    nodes = args.cluster_size + (args.num_ps + 1 if pss else 0)  # + ps and the chief
    spark = get_session(f"tfspark-mnist-{args.input_mode}", args.master, local_slots=nodes + 1,
                        remote=args.remote)
    print(f"master: {master_of(spark)}", flush=True)
    started = time.time()
    try:
        tensorboard = bool(args.tensorboard and args.log_dir and not export.is_remote(args.log_dir))
        if args.tensorboard and not tensorboard:
            print("note: --tensorboard needs a local --log_dir; logs are still written")
        df = tfrecord.read(spark, args.images_labels).select("image", "label")
        roles = dict(num_ps=args.num_ps, master_node="chief") if pss else {}
        if args.input_mode == "spark":
            cluster = TFCluster.run(spark, main_fun, args, nodes, tensorboard=tensorboard,
                                    input_mode=InputMode.SPARK, log_dir=args.log_dir,
                                    max_restarts=args.max_restarts, mlflow=args.mlflow, **roles)
            cluster.train(df, num_epochs=args.epochs)
        else:
            count = df.count()
            # PSS: a step is one batch from one worker; MWMS: one batch from every worker
            per_step = args.batch_size * (1 if pss else args.cluster_size)
            args.steps_per_epoch = max(1, math.ceil(count / per_step))
            print(f"{count} training records: {'' if pss else 'about '}{args.steps_per_epoch} "
                  f"steps per epoch of {'batch' if pss else 'global batch'} {per_step}")
            if pss:
                roles["stage_files"] = {"train": args.images_labels}
            cluster = TFCluster.run(spark, main_fun, args, nodes, tensorboard=tensorboard,
                                    input_mode=InputMode.TENSORFLOW, log_dir=args.log_dir,
                                    max_restarts=args.max_restarts, mlflow=args.mlflow, **roles)
        if getattr(cluster, "tensorboard_url", None):
            print(f"TensorBoard: {cluster.tensorboard_url}")
        results = cluster.shutdown(timeout=args.timeout)
        chief = results[args.num_ps] if pss else results[0]
        print(f"final training loss {chief['loss'][-1]:.4f}, accuracy {chief['accuracy'][-1]:.4f}"
              f" (model.fit took {chief['train_secs']:.1f}s)")
        print(f"exported SavedModel: {chief['export']}")
        print(f"total wall time {time.time() - started:.1f}s")
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
