"""The TF cluster's life on the driver.

``cluster`` (:class:`~tfspark.TFCluster`: run, train, shutdown, the restart policy) starts each
run of the TF cluster as an ``attempt`` (one barrier stage, the control channel, the nodes'
states); ``feeding`` sends Spark's rows to a running cluster; ``spark_backend`` is the one way
to Spark (a SparkContext, or Spark Connect); ``preflight``, ``yarn`` and ``standalone`` say
before any node starts what cannot work; ``progress`` shows training; ``node_tokens`` hands the
nodes HDFS delegation tokens; ``worker_errors`` brings tfspark errors back from Spark tasks.

May import ``_node`` (the plan a node's task gets), ``_feed``, ``_strategies`` and ``fs``;
nothing outside the driver side imports this package.
"""
