"""A TF node's own process: runs ``main_fun(args, ctx)`` once, in a fresh interpreter.

Started by :mod:`tfspark._node.task` with ``TF_USE_LEGACY_KERAS`` already in its environment, so
whatever TensorFlow and Keras a reused Spark Python worker imported before cannot leak in. It
starts while the nodes meet: once ready, if the nodes have not met yet, it imports TensorFlow
in the background meanwhile (unless ``TFSPARK_PRELOAD_TENSORFLOW=0``; an import holds the GIL
for long stretches, so never before), and waits for its task to write "go" to its stdin, when the
context (with ``TF_CONFIG``, set into the environment before ``main_fun`` runs) and the payload
are in its folder. Writes how ``main_fun`` ended to ``outcome.json`` (and its pickled return
value to ``value.pkl``) there; exits when its parent task goes away.

Usage (internal): ``python -m tfspark._node.process WORKDIR``
"""
from __future__ import annotations

import atexit
import importlib.util
import json
import os
import pickle
import select
import sys
import threading
import time
import traceback
from typing import Optional

from tfspark import constants
from tfspark._node.spawn import CONTEXT_FILE, ERROR, GO, OK, OUTCOME_FILE, PAYLOAD_FILE, VALUE_FILE
from tfspark._node.zip_cache import import_caching_bytecode
from tfspark._strategies.base import for_job_names

_KERAS3_HINT = (
    "\nHint: this node ran with Keras 3 (TF_USE_LEGACY_KERAS is off), whose model.fit does not "
    "support MultiWorkerMirroredStrategy or ParameterServerStrategy. Remove "
    "TF_USE_LEGACY_KERAS from TFCluster.run(env=...) to use tf-keras (the default).")


def _exit_with_parent() -> None:
    """End this process soon after the Spark task that started it is gone."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(constants.PARENT_WATCH_INTERVAL_SECS)
        os._exit(1)

    threading.Thread(target=watch, name="tfspark-parent-watch", daemon=True).start()


def _check_keras() -> None:
    if constants.is_true(os.environ.get(constants.TF_USE_LEGACY_KERAS, "")):
        if importlib.util.find_spec("tf_keras") is None:
            raise RuntimeError(
                "tfspark runs TF nodes with TF_USE_LEGACY_KERAS=1 (tf-keras), but the package "
                f"tf-keras is not installed in the executors' Python ({sys.executable}). Install "
                "tf-keras matching your TensorFlow version there, or pass "
                "env={'TF_USE_LEGACY_KERAS': '0'} to TFCluster.run to use Keras 3 (custom "
                "training loops only).")


def _preload_tensorflow() -> Optional[threading.Thread]:
    """Import TensorFlow in a background thread, so that main_fun's own import (which waits for
    it) finds it done or under way; None if turned off or not installed."""
    if not constants.is_true(os.environ.get(constants.PRELOAD_TENSORFLOW, "1")) or \
            importlib.util.find_spec("tensorflow") is None:
        return None

    def load() -> None:
        try:
            import tensorflow  # noqa: F401
        except BaseException:  # noqa: B902 - main_fun's own import reports it
            pass

    thread = threading.Thread(target=load, name="tfspark-import-tensorflow", daemon=True)
    thread.start()
    return thread


def _go_is_waiting() -> bool:
    """Whether the task's line ("go", or a stop) is already there to read on stdin."""
    ready, _, _ = select.select([sys.stdin.buffer], [], [], 0)
    return bool(ready)


def _exit(code: int, preload: Optional[threading.Thread]) -> None:
    """Exit with ``code``. While TensorFlow is still being imported in the background (main_fun
    never waited for it), the interpreter must not tear down under that thread: run the exit
    handlers, then end the process at once."""
    if preload is None or not preload.is_alive():
        sys.exit(code)
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _write_outcome(workdir: str, outcome: dict) -> None:
    tmp = os.path.join(workdir, OUTCOME_FILE + ".tmp")
    with open(tmp, "w") as f:
        json.dump(outcome, f)
    os.replace(tmp, os.path.join(workdir, OUTCOME_FILE))


def _load_payload(path: str):
    try:
        with open(path, "rb") as f:
            data = f.read()
        os.remove(path)
        return pickle.loads(data)
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            f"{e}: main_fun or args refer to module '{e.name}', which the executors cannot "
            "import. Ship it with spark-submit --py-files (or sc.addPyFile), install it on the "
            "executors, or define main_fun in the driver script.", name=e.name) from e


def _tf_error_name(error: BaseException) -> Optional[str]:
    """The class name of a ``tf.errors.OpError`` (e.g. "UnavailableError"), else None."""
    tf_errors = sys.modules.get("tensorflow.python.framework.errors_impl")
    if tf_errors is not None and isinstance(error, tf_errors.OpError):
        return type(error).__name__
    return None


def main(workdir: str) -> None:
    """Run the node, then exit: 0 if main_fun returned, else 1."""
    _exit_with_parent()
    preload = None
    try:
        _check_keras()
        from tfspark._node import fit_progress
        fit_progress.install()  # before anything imports Keras
        # for the payload (from an unpacked pyspark.zip: zip_cache)
        import_caching_bytecode("pyspark.cloudpickle")
        # importing TensorFlow holds the GIL for long stretches, so it runs in the background
        # only while this process waits for the nodes to meet, never in the way of getting here
        preload = None if _go_is_waiting() else _preload_tensorflow()
        # "go" once the nodes have met; anything else: the task gave up and is stopping us
        code = _run(workdir) if sys.stdin.buffer.readline() == GO else 1
    except BaseException as e:  # noqa: B902 - every way main_fun can end is reported
        code = _report(workdir, e)
    _exit(code, preload)


def _run(workdir: str) -> int:
    with open(os.path.join(workdir, CONTEXT_FILE), "rb") as f:
        ctx = pickle.load(f)
    os.remove(os.path.join(workdir, CONTEXT_FILE))  # it holds the job's key: read once
    os.environ[constants.TF_CONFIG] = ctx.tf_config
    if ctx.feed_port is not None:
        from tfspark._feed import datafeed
        from tfspark._strategies.pss import FEED_DIR
        strategy = for_job_names(ctx.cluster_spec)
        if ctx.runs_server_only:  # in its own folder: see pss.FEED_DIR
            datafeed.start(ctx.shard_index, ctx.host, ctx.feed_port, ctx.secret, FEED_DIR,
                           spill_format=strategy.serving_spill_format)
            datafeed.await_feeds(ctx.awaits_feeds, constants.REFEED_TIMEOUT_SECS)
        else:
            datafeed.start(ctx.shard_index, ctx.host, ctx.feed_port, ctx.secret,
                           os.path.join(workdir, "spill"), spill_root=FEED_DIR,
                           batch_for=ctx.per_worker_batch)
    if ctx.runs_server_only:
        from tfspark._strategies.pss import serve, stage_files
        stage_files(ctx)
        serve(ctx)  # never returns: tfspark stops the process when training ends
    main_fun, args = _load_payload(os.path.join(workdir, PAYLOAD_FILE))
    value = main_fun(args, ctx)
    from pyspark import cloudpickle
    try:
        data = cloudpickle.dumps(value)
    except Exception as e:
        raise TypeError(f"main_fun's return value of type {type(value).__name__} cannot be "
                        f"pickled to send it to the driver: {e}") from e
    with open(os.path.join(workdir, VALUE_FILE), "wb") as f:
        f.write(data)
    _write_outcome(workdir, {"status": OK})
    return 0


def _report(workdir: str, error: BaseException) -> int:
    """Write how the node failed to its outcome file (and the traceback to stderr)."""
    message = f"{type(error).__name__}: {error}"
    text = "".join(traceback.format_exception(error))
    if "PerReplica" in message and not constants.is_true(
            os.environ.get(constants.TF_USE_LEGACY_KERAS, "")):
        message += _KERAS3_HINT
    _write_outcome(workdir, {"status": ERROR, "message": message, "traceback": text,
                             "error_type": _tf_error_name(error)})
    sys.stderr.write(text)
    return 1


if __name__ == "__main__":
    main(sys.argv[1])
