"""Getting a SparkSession the way a tfspark job script expects: spark-submit's master when
spark-submit runs it, otherwise an embedded local Spark (or the master the caller names)."""
from __future__ import annotations

import os
import sys
from typing import Dict, Optional


def under_spark_submit() -> bool:
    """True when spark-submit started this Python driver (it sets PYSPARK_GATEWAY_PORT).

    Before the SparkContext exists, ``SparkConf()`` cannot see spark-submit's ``--master``.
    """
    return "PYSPARK_GATEWAY_PORT" in os.environ


def get_session(app_name: str, master: Optional[str] = None, local_slots: int = 2,
                conf: Optional[Dict[str, str]] = None, remote: Optional[str] = None):
    """A SparkSession for a job script.

    Parameters
    ----------
    app_name : the application's name.
    master : a Spark master URL; wins over everything else when given.
    remote : a Spark Connect URL (``sc://host:15002``, or ``local[N]`` for a local Connect
        server): the session is then a Spark Connect client, and ``master`` is ignored.
    local_slots : task slots of the embedded ``local[N]`` Spark used when neither ``master`` nor
        spark-submit names a master (one per TF node, plus one for a feeding job).
    conf : extra Spark settings.

    Executors started locally use this Python (``PYSPARK_PYTHON``), which has TensorFlow.
    """
    from pyspark import SparkConf
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    conf = dict(conf or {})
    if remote:
        builder = SparkSession.builder.remote(remote).appName(app_name)
        for key, value in conf.items():
            builder = builder.config(key, value)
        return builder.getOrCreate()
    # tfspark prints training progress itself; Spark's stage bar would write over it.
    conf.setdefault("spark.ui.showConsoleProgress", "false")
    spark_conf = SparkConf().setAppName(app_name)
    for key, value in conf.items():
        spark_conf.set(key, value)
    if master or not under_spark_submit():
        spark_conf.setMaster(master or f"local[{local_slots}]")
    return SparkSession.builder.config(conf=spark_conf).getOrCreate()


def is_connect_session(spark) -> bool:
    """True for a Spark Connect session (it has no SparkContext, RDDs or broadcasts)."""
    from tfspark._driver.spark_backend import is_connect_session as is_connect
    return is_connect(spark)


def master_of(spark) -> str:
    """The Spark master of a session, classic or Spark Connect (which has no SparkContext)."""
    try:
        return spark.conf.get("spark.master")
    except Exception:  # noqa: BLE001 - a Connect server that hides it
        return "?"
