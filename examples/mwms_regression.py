"""Quick start: train a small Keras model on 2 TF workers (MultiWorkerMirroredStrategy) on Spark.

    python examples/mwms_regression.py                      # embedded local Spark, 2 workers
    spark-submit --master spark://HOST:7077 examples/mwms_regression.py --num-workers 2

Each worker generates its own shard of a noisy linear regression problem; the workers' gradients
are all-reduced every step, so both end with the same weights. Prints the loss of every epoch
(from each worker, relayed to the driver) and the final mean absolute error on held-out data.
"""
import argparse


from tfspark import TFCluster
from tfspark.session import get_session


def main_fun(args, ctx):
    import numpy as np
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    true_weights = np.array([1.5, -2.0, 0.5, 3.0], "float32")
    rng = np.random.default_rng(ctx.worker_num)  # this worker's own shard of the data
    x = rng.normal(size=(args.rows_per_worker, 4)).astype("float32")
    y = x @ true_weights + 0.7 + rng.normal(scale=0.05, size=len(x)).astype("float32")

    with strategy.scope():
        model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(1)])
        model.compile(optimizer=tf.keras.optimizers.SGD(args.learning_rate), loss="mse",
                      metrics=["mae"])

    class PrintLoss(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            print(f"epoch {epoch + 1}/{args.epochs}: loss={logs['loss']:.4f} "
                  f"mae={logs['mae']:.4f}", flush=True)

    train = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x)).repeat()
    model.fit(train.batch(args.batch_size), epochs=args.epochs, steps_per_epoch=args.steps,
              callbacks=[PrintLoss()], verbose=0)

    holdout = np.random.default_rng(1234).normal(size=(1000, 4)).astype("float32")
    error = np.abs(model.predict(holdout, verbose=0)[:, 0] - (holdout @ true_weights + 0.7))
    return float(error.mean())


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--master", default=None,
                        help="Spark master when not run by spark-submit (default: local[N])")
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20, help="steps per epoch")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rows-per-worker", type=int, default=2048)
    parser.add_argument("--learning-rate", type=float, default=0.05)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    spark = get_session("tfspark-mwms-regression", args.master, local_slots=args.num_workers)
    try:
        cluster = TFCluster.run(spark.sparkContext, main_fun, args, args.num_workers)
        errors = cluster.shutdown(timeout=1800)
        print(f"final mean absolute error on held-out data: {errors[0]:.4f} "
              f"(workers agree: {len(set(errors)) == 1})")
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
