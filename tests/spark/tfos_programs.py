"""TensorFlowOnSpark programs, written as TFoS's own examples and tests write them, with one
change: the import line. Driver for test_tfos_programs.py, on 2 executors x 1 core.

    python tfos_programs.py MASTER_URL WORK_DIR   -> prints one JSON line: RESULT {...}
"""
import json
import os
import sys
import time

import numpy as np
from pyspark import SparkConf, SparkContext
from pyspark.sql import SparkSession

from tfspark.compat.tensorflowonspark import TFCluster, TFNode, TFParallel, dfutil  # the change
from tfspark.compat.tensorflowonspark import compat  # the change
from tfspark.compat.tensorflowonspark.pipeline import TFEstimator, TFModel
# as TFoS's test_pipeline does: Keras classes imported on the driver (after the compat import:
# tf-keras, as on the nodes), used inside the train function that Spark ships
from tensorflow.keras import Sequential  # noqa: E402
from tensorflow.keras.layers import Dense  # noqa: E402


def basic_tf(sc, result):
    """TFoS test_TFCluster.test_basic_tf: InputMode.TENSORFLOW, args as a dict."""
    def _map_fun(args, ctx):
        import tensorflow as tf
        x = tf.constant(args['x'])
        y = tf.constant(args['y'])
        sum = tf.math.add(x, y)
        assert sum.numpy() == 3
        return ctx.job_name, ctx.task_index

    args = {'x': 1, 'y': 2}
    cluster = TFCluster.run(sc, _map_fun, tf_args=args, num_executors=2, num_ps=0)
    cluster.shutdown()
    result["basic_tf"] = "ok"


def inputmode_spark(sc, result):
    """TFoS test_TFCluster.test_inputmode_spark (+ the exception tests): inference with
    TFNode.DataFeed(ctx.mgr, False), results summed."""
    def _map_fun(args, ctx):
        import tensorflow as tf
        tf_feed = TFNode.DataFeed(ctx.mgr, False)
        while not tf_feed.should_stop():
            batch = tf_feed.next_batch(batch_size=10)
            print("batch: {}".format(batch))
            squares = tf.math.square(batch)
            print("squares: {}".format(squares))
            tf_feed.batch_results(squares.numpy())

    input = [[x] for x in range(1000)]    # set up input as tensors of shape [1]
    rdd = sc.parallelize(input, 10)
    cluster = TFCluster.run(sc, _map_fun, tf_args={}, num_executors=2, num_ps=0,
                            input_mode=TFCluster.InputMode.SPARK)
    rdd_out = cluster.inference(rdd)
    rdd_sum = rdd_out.sum()
    result["inference_sum"] = int(np.asarray(rdd_sum).sum())
    result["inference_first"] = [int(np.asarray(r).sum()) for r in rdd_out.take(3)]
    cluster.shutdown()

    def _map_fun_exception(args, ctx):
        import tensorflow as tf
        tf_feed = TFNode.DataFeed(ctx.mgr, False)
        while not tf_feed.should_stop():
            batch = tf_feed.next_batch(10)
            if len(batch) > 0:
                squares = tf.math.square(batch)
                tf_feed.batch_results(squares.numpy())
                raise Exception("FAKE exception during feeding")

    started = time.time()
    try:
        cluster = TFCluster.run(sc, _map_fun_exception, tf_args={}, num_executors=2, num_ps=0,
                                input_mode=TFCluster.InputMode.SPARK)
        cluster.inference(rdd, feed_timeout=1).count()
        cluster.shutdown()
    except Exception as e:
        result["exception_during_feeding"] = [str(e).splitlines()[0], time.time() - started]

    def _map_fun_late_exception(args, ctx):
        import tensorflow as tf
        tf_feed = TFNode.DataFeed(ctx.mgr, False)
        while not tf_feed.should_stop():
            batch = tf_feed.next_batch(10)
            if len(batch) > 0:
                squares = tf.math.square(batch)
                tf_feed.batch_results(squares.numpy())
        # simulate post-feed actions that raise an exception
        time.sleep(2)
        raise Exception("FAKE exception after feeding")

    try:
        cluster = TFCluster.run(sc, _map_fun_late_exception, tf_args={}, num_executors=2,
                                num_ps=0, input_mode=TFCluster.InputMode.SPARK)
        cluster.inference(rdd).count()
        cluster.shutdown(grace_secs=5)
    except Exception as e:
        result["exception_after_feeding"] = str(e).splitlines()[0]


def mnist_keras_spark(sc, args, result):
    """TFoS examples/mnist/keras/mnist_spark.py: DataFeed + from_generator, MWMS, a chief."""
    def main_fun(args, ctx):
        import numpy as np
        import tensorflow as tf
        from tfspark.compat.tensorflowonspark import compat, TFNode

        strategy = tf.distribute.experimental.MultiWorkerMirroredStrategy()

        def build_and_compile_cnn_model():
            model = tf.keras.Sequential([
                tf.keras.layers.Conv2D(8, 3, activation='relu', input_shape=(8, 8, 1)),
                tf.keras.layers.Flatten(),
                tf.keras.layers.Dense(10, activation='softmax')
            ])
            model.compile(loss=tf.keras.losses.sparse_categorical_crossentropy,
                          optimizer=tf.keras.optimizers.SGD(learning_rate=0.1),
                          metrics=['accuracy'])
            return model

        tf_feed = TFNode.DataFeed(ctx.mgr, False)

        def rdd_generator():
            while not tf_feed.should_stop():
                batch = tf_feed.next_batch(1)
                if len(batch) > 0:
                    example = batch[0]
                    image = np.array(example[0]).astype(np.float32) / 16.0
                    image = np.reshape(image, (8, 8, 1))
                    label = np.array(example[1]).astype(np.float32)
                    label = np.reshape(label, (1,))
                    yield (image, label)
                else:
                    return

        ds = tf.data.Dataset.from_generator(rdd_generator, (tf.float32, tf.float32),
                                            (tf.TensorShape([8, 8, 1]), tf.TensorShape([1])))
        ds = ds.batch(args.batch_size)

        tf.io.gfile.makedirs(args.model_dir)
        filepath = args.model_dir + "/weights-{epoch:04d}"
        callbacks = [tf.keras.callbacks.ModelCheckpoint(filepath=filepath, verbose=1,
                                                        save_weights_only=True)]

        with strategy.scope():
            multi_worker_model = build_and_compile_cnn_model()

        # only train 90% of each epoch to account for uneven RDD partition sizes
        steps_per_epoch = args.num_rows / args.batch_size
        steps_per_epoch_per_worker = steps_per_epoch / ctx.num_workers
        max_steps_per_worker = int(steps_per_epoch_per_worker * 0.9)

        multi_worker_model.fit(x=ds, epochs=args.epochs, steps_per_epoch=max_steps_per_worker,
                               callbacks=callbacks)

        compat.export_saved_model(multi_worker_model, args.export_dir, ctx.job_name == 'chief')

        # terminating feed tells spark to skip processing further partitions
        tf_feed.terminate()

    images_labels = sc.parallelize([(list(map(int, x)), int(y))
                                    for x, y in zip(args.images, args.labels)], 4)
    cluster = TFCluster.run(sc, main_fun, args, args.cluster_size, num_ps=0,
                            tensorboard=False, input_mode=TFCluster.InputMode.SPARK,
                            master_node='chief')
    cluster.train(images_labels, args.epochs)
    cluster.shutdown()
    result["mnist_spark_export"] = sorted(os.listdir(args.export_dir))


def mnist_keras_tf(sc, args, result):
    """TFoS examples/mnist/keras/mnist_tf_ds.py: InputMode.TENSORFLOW reading TFRecords
    (written with dfutil.saveAsTFRecords) through ctx.absolute_path."""
    def main_fun(args, ctx):
        import tensorflow as tf
        from tfspark.compat.tensorflowonspark import compat

        strategy = tf.distribute.experimental.MultiWorkerMirroredStrategy()
        BUFFER_SIZE = 10000
        GLOBAL_BATCH_SIZE = args.batch_size * ctx.num_workers

        def parse_tfos(example_proto):
            feature_def = {"label": tf.io.FixedLenFeature(1, tf.int64),
                           "image": tf.io.FixedLenFeature(8 * 8, tf.int64)}
            features = tf.io.parse_single_example(example_proto, feature_def)
            image = tf.cast(features['image'], tf.float32) / 16
            image = tf.reshape(image, (8, 8, 1))
            return (image, features['label'])

        image_pattern = ctx.absolute_path(args.images_labels) + "/part-*"
        ds = tf.data.Dataset.list_files(image_pattern)
        ds = ds.repeat(args.epochs).shuffle(BUFFER_SIZE)
        ds = ds.interleave(tf.data.TFRecordDataset)
        ds = ds.map(parse_tfos)
        ds = ds.batch(GLOBAL_BATCH_SIZE)

        with strategy.scope():
            model = tf.keras.Sequential([
                tf.keras.layers.Flatten(input_shape=(8, 8, 1)),
                tf.keras.layers.Dense(10, activation='softmax')])
            model.compile(loss='sparse_categorical_crossentropy', optimizer='adam',
                          metrics=['accuracy'])
        history = model.fit(x=ds, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch)
        compat.export_saved_model(model, args.export_dir + "_tf", ctx.job_name == 'chief')
        return history.history['accuracy'][-1]

    spark = SparkSession.builder.getOrCreate()
    df = spark.createDataFrame([(list(map(int, x)), int(y))
                                for x, y in zip(args.images, args.labels)], ["image", "label"])
    dfutil.saveAsTFRecords(df, args.images_labels)
    cluster = TFCluster.run(sc, main_fun, args, args.cluster_size, num_ps=0,
                            input_mode=TFCluster.InputMode.TENSORFLOW, master_node='chief')
    cluster.shutdown()
    result["mnist_tf_export"] = sorted(os.listdir(args.export_dir + "_tf"))


def pipeline(sc, work, result):
    """TFoS test_pipeline.test_spark_saved_model: TFEstimator/TFModel with input/output
    mappings, a linear regression fed from a DataFrame; Keras classes from the driver's
    imports, tf-keras's ``Adam(lr=...)``, default layer names in the mappings."""
    def _spark_train(args, ctx):
        import tensorflow as tf
        from tfspark.compat.tensorflowonspark import TFNode

        tf.compat.v1.reset_default_graph()
        strategy = tf.distribute.experimental.MultiWorkerMirroredStrategy()
        with strategy.scope():
            model = Sequential()
            model.add(Dense(1, activation='linear', input_shape=[2]))
            model.compile(optimizer=tf.keras.optimizers.Adam(lr=0.2), loss='mse',
                          metrics=['mse'])
            model.summary()

        tf_feed = TFNode.DataFeed(ctx.mgr, input_mapping=args.input_mapping)

        def rdd_generator():
            while not tf_feed.should_stop():
                batch = tf_feed.next_batch(1)
                if len(batch['x']) > 0:
                    yield (batch['x'][0], batch['y_'][0])
                else:
                    return

        ds = tf.data.Dataset.from_generator(rdd_generator, (tf.float32, tf.float32),
                                            (tf.TensorShape([2]), tf.TensorShape([1])))
        options = tf.data.Options()
        compat.disable_auto_shard(options)
        ds = ds.with_options(options).batch(args.batch_size)
        # 90% of an epoch, for uneven partitions (TFoS's rule)
        steps_per_epoch = 1000 * 0.9 // (args.batch_size * ctx.num_workers)

        tf.io.gfile.makedirs(args.model_dir)
        filepath = args.model_dir + "/weights-{epoch:04d}"
        callbacks = [tf.keras.callbacks.ModelCheckpoint(
            filepath=filepath, verbose=1, load_weights_on_restart=True,
            save_weights_only=True)]
        model.fit(ds, epochs=args.epochs, steps_per_epoch=steps_per_epoch, callbacks=callbacks)
        if args.export_dir:
            print("exporting model to: {}".format(args.export_dir))
            compat.export_saved_model(model, args.export_dir, ctx.job_name == 'chief')
        tf_feed.terminate()

    weights = np.array([3.14, 1.618])
    rng = np.random.default_rng(0)
    features = rng.uniform(0, 1, (1000, 2))
    train_examples = [(f.tolist(), [float(np.dot(f, weights))]) for f in features]
    rdd = sc.parallelize(train_examples, 2)
    trainDF = rdd.toDF(['col1', 'col2'])

    model_dir, export_dir = f"{work}/pipeline_model", f"{work}/pipeline_export"
    estimator = TFEstimator(_spark_train, {}) \
        .setInputMapping({'col1': 'x', 'col2': 'y_'}) \
        .setModelDir(model_dir) \
        .setExportDir(export_dir) \
        .setClusterSize(2) \
        .setMasterNode("chief") \
        .setNumPS(0) \
        .setBatchSize(1) \
        .setEpochs(1)
    model = estimator.fit(trainDF)
    result["pipeline_exported"] = os.path.isdir(export_dir)

    spark = SparkSession.builder.getOrCreate()
    testDF = spark.createDataFrame([([1.0, 1.0], [0.0]), ([0.5, 0.5], [0.0])], ['c1', 'c2'])
    model.setTagSet('serve') \
        .setSignatureDefKey('serving_default') \
        .setInputMapping({'c1': 'dense_input'}) \
        .setOutputMapping({'dense': 'cout'})
    preds = model.transform(testDF)
    result["pipeline_columns"] = preds.columns
    result["pipeline_preds"] = [row.cout[0] for row in preds.collect()]


def ports(sc, result):
    """TFoS test_TFCluster.test_port_released / test_port_unreleased: with release_port=False,
    map_fun holds the node's port in ctx.tmp_socket (nothing else can bind it) until
    ctx.release_port(); by default it gets no socket."""
    def _released(args, ctx):
        assert ctx.tmp_socket is None

    def _unreleased(args, ctx):
        import socket
        assert ctx.tmp_socket is not None
        reserved_port = ctx.tmp_socket.getsockname()[1]
        my_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            my_sock.bind(('0.0.0.0', reserved_port))
            assert False, "the reserved port could be bound"
        except socket.error as e:
            print(e)
        finally:
            my_sock.close()
        ctx.release_port()
        assert ctx.tmp_socket is None
        return reserved_port

    for name, map_fun, release in (("released", _released, True),
                                   ("unreleased", _unreleased, False)):
        cluster = TFCluster.run(sc, map_fun, tf_args={}, num_executors=2, num_ps=0,
                                input_mode=TFCluster.InputMode.TENSORFLOW, master_node='chief',
                                release_port=release)
        cluster.shutdown()
        result[f"port_{name}"] = "ok"


def dfutil_round_trip(sc, work, result):
    """TFoS test_dfutil: str/int/int[]/float/float[]/binary columns to TFRecords and back."""
    spark = SparkSession.builder.getOrCreate()
    row1 = ('text string', 1, [2, 3, 4, 5], -1.1, [-2.3, -4.5], bytearray(b'\xff\xfe\xfd\xfc'))
    rdd = sc.parallelize([row1])
    df1 = spark.createDataFrame(rdd, ['a', 'b', 'c', 'd', 'e', 'f'])
    tfrecord_dir = f"{work}/tfr"
    dfutil.saveAsTFRecords(df1, tfrecord_dir)
    df2 = dfutil.loadTFRecords(sc, tfrecord_dir, binary_features=['f'])
    row2 = df2.take(1)[0]
    result["dfutil"] = {"loaded": dfutil.isLoadedDF(df2), "not_loaded": dfutil.isLoadedDF(df1),
                        "filtered": dfutil.isLoadedDF(df2.filter(df2.a == 'text string')),
                        "types": dict(df2.dtypes),
                        "values": [row2['a'], row2['b'], row2['c'], round(row2['d'], 5),
                                   [round(v, 5) for v in row2['e']], list(row2['f'])]}


def tfparallel(sc, work, result):
    """TFoS test_TFParallel: independent single-node TF instances."""
    def _map_fun(args, ctx):
        import os
        import tensorflow as tf
        x = tf.constant(args['x'])
        y = tf.constant(args['y'])
        sum = tf.math.add(x, y)
        assert sum.numpy() == 3
        with open(os.path.join(args['out'], str(ctx.worker_num)), "w") as f:
            json.dump({"num_workers": ctx.num_workers, "tf_config": os.environ.get("TF_CONFIG"),
                       "devices": len(tf.config.list_logical_devices())}, f)

    out = f"{work}/parallel"
    os.makedirs(out)
    args = {'x': 1, 'y': 2, 'out': out}
    TFParallel.run(sc, _map_fun, tf_args=args, num_executors=2, use_barrier=False)
    result["parallel"] = {name: json.load(open(os.path.join(out, name)))
                          for name in sorted(os.listdir(out))}


class Args:
    pass


def main(master, work):
    conf = SparkConf().setAppName("tfos_programs").setMaster(master) \
        .set("spark.executor.cores", "1").set("spark.executor.memory", "1g") \
        .set("spark.driver.host", "127.0.0.1").set("spark.ui.enabled", "false")
    sc = SparkContext(conf=conf)
    result = {}
    basic_tf(sc, result)
    ports(sc, result)
    inputmode_spark(sc, result)

    from sklearn.datasets import load_digits
    digits = load_digits()
    args = Args()
    args.images, args.labels = digits.data[:1024], digits.target[:1024]
    args.num_rows, args.batch_size, args.epochs, args.cluster_size = 1024, 32, 2, 2
    args.steps_per_epoch = 10
    args.model_dir, args.export_dir = f"{work}/mnist_model", f"{work}/mnist_export"
    args.images_labels = f"file://{work}/mnist_tfr"
    mnist_keras_spark(sc, args, result)
    mnist_keras_tf(sc, args, result)
    pipeline(sc, work, result)
    dfutil_round_trip(sc, work, result)
    tfparallel(sc, work, result)
    print("RESULT " + json.dumps(result), flush=True)
    sc.stop()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
