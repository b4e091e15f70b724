"""A local Spark Connect server (local[3], port 15002) for the test session: the
``connect_server`` fixture starts it once, and every Connect test's client subprocess dials it.

    SPARK_CONNECT_AUTHENTICATE_TOKEN=... python connect_server.py   -> prints READY;
    runs until its stdin closes
"""
import sys

from pyspark.sql import SparkSession

spark = SparkSession.builder.remote("local[3]").getOrCreate()
spark.range(1).count()  # the server answers
print("READY", flush=True)
sys.stdin.read()
