"""tfspark errors from Spark's Python workers become those errors on the driver (PySpark's
exception classes need the session's JVM, hence the ``spark`` fixture; no job runs)."""
from pyspark.errors.exceptions.captured import CapturedException, PythonException, UnknownException

from tfspark import TFSparkError
from tfspark._driver.worker_errors import StageCanceller, as_tfspark_error
from tfspark.scoring import PredictError

TRACEBACK = ("\n  An exception was thrown from the Python worker. Please see the stack trace below.\n"
             "Traceback (most recent call last):\n"
             '  File "/x/tfspark/scoring.py", line 339, in _to_numpy\n'
             "tfspark.scoring.PredictError: column 'bad' has null values; fill or drop them\n")


def test_a_worker_traceback_ending_in_a_tfspark_error_becomes_that_error(spark):
    original = PythonException(desc=TRACEBACK, stackTrace="")
    error = as_tfspark_error(original)
    assert isinstance(error, PredictError) and isinstance(error, PythonException)
    assert str(error).startswith("column 'bad' has null values; fill or drop them\n")
    assert error.spark_error is original and error.args == (
        "column 'bad' has null values; fill or drop them",)


def test_a_cancelled_job_carrying_the_error_becomes_it_too(spark):
    # PySpark re-raises its UnknownException as the raw Py4J error: not a base to keep
    original = UnknownException(desc="org.apache.spark.SparkException: Job 8 cancelled because \n"
                                     "tfspark.scoring.PredictError: column 'bad' has null values",
                                stackTrace="")
    error = as_tfspark_error(original)
    assert isinstance(error, PredictError) and isinstance(error, CapturedException)
    assert not isinstance(error, UnknownException)


def test_other_errors_are_left_as_they_are(spark):
    assert as_tfspark_error(PythonException(desc="Traceback\nValueError: no", stackTrace="")) \
        is None
    assert as_tfspark_error(PythonException(desc="tfspark.fs.join: not a class", stackTrace="")) \
        is None
    assert as_tfspark_error(PredictError("already ours")) is None
    assert issubclass(PredictError, TFSparkError)


def test_the_cancellers_secret_stays_out_of_its_repr():
    assert "s3cr3t" not in repr(StageCanceller(("127.0.0.1", 1), b"s3cr3t"))
