"""Driver for test_feed_mode.py: ``TFCluster.run`` right after the application starts, while
one worker's executor is still starting (its JVM starts seconds late).

    python feed_mode_job.py MASTER_URL MASTER_UI_PORT NODES  -> one line: RESULT {...}
"""
import json
import logging
import sys

from pyspark.sql import SparkSession

from tfspark import InputMode, TFCluster


def count_rows(args, ctx):
    return sum(len(batch["x"]) for batch in ctx.get_data_feed().dataset(8))


def main(master: str, ui_port: str, nodes: int) -> None:
    log = []
    handler = logging.Handler()
    handler.emit = lambda record: log.append(record.getMessage())
    logging.getLogger("tfspark").addHandler(handler)
    logging.getLogger("tfspark").setLevel(logging.INFO)
    spark = (SparkSession.builder.master(master).appName("tfspark-feed-mode")
             .config("spark.executor.cores", "1").config("spark.executor.memory", "1g")
             .config("spark.master.ui.port", ui_port)  # where the master's web UI listens
             .config("spark.driver.host", "127.0.0.1").config("spark.ui.enabled", "false")
             .getOrCreate())
    sc = spark.sparkContext
    registered = sc._jsc.sc().maxNumConcurrentTasks(
        sc._jsc.sc().resourceProfileManager().defaultResourceProfile())
    cluster = TFCluster.run(sc, count_rows, None, nodes, input_mode=InputMode.SPARK)
    stage = cluster.feed_mode == "stage"
    cluster.train(spark.range(0, 100, 1, 3).selectExpr("CAST(id AS float) AS x"))
    rows = cluster.shutdown(timeout=300)
    print("RESULT " + json.dumps({
        "stage": stage, "registered_at_start": registered, "rows": rows,
        "said": [line for line in log if "feed_mode='auto'" in line]}), flush=True)
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
