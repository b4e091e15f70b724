"""Every exception type tfspark raises, in one tree.

Every error a user sees from tfspark is a :class:`TFSparkError`; the subclasses say at which
stage it happened so callers can tell a bad setting from a failed node. All are defined here
(and also importable where they are raised: ``tfspark.scoring.PredictError`` is
``tfspark.errors.PredictError``), so ``except tfspark.errors.X`` needs no other import.
"""
from __future__ import annotations

from typing import Optional, Sequence


class TFSparkError(Exception):
    """Base class of every error tfspark raises."""


class PreflightError(TFSparkError):
    """A setting or argument cannot work; raised on the driver before anything is started."""


class ReservationError(TFSparkError):
    """The TF nodes could not be reserved (the barrier stage did not start or finish gathering)."""


class FileSystemError(TFSparkError):
    """A path could not be read, written, listed or found."""


def attempts_text(causes: Sequence[str]) -> str:
    """What each attempt of a TF cluster ended with, for the error raised when all failed."""
    return (f"The TF cluster ran {len(causes)} times and every attempt failed:\n"
            + "\n".join(f"  attempt {i + 1}: {cause}" for i, cause in enumerate(causes)))


class StageError(TFSparkError):
    """The TF cluster's Spark stage failed without a node reporting why (e.g. an executor was
    lost before its node's process was). ``restartable`` and ``cause`` as for NodeError."""

    def __init__(self, message: str, restartable: bool = False):
        super().__init__(message)
        self.restartable = restartable
        self.cause = message.splitlines()[0]


#: TensorFlow crashes (process aborts) that a node's last output lines identify: what to do.
_KNOWN_TF_CRASHES = (
    (("Check failed: dtype() == expected_dtype", "MklMaxPoolingGradOp"),
     "TensorFlow's oneDNN MaxPool gradient aborts on an empty batch "
     "(tensorflow/tensorflow#126128). Under MultiWorkerMirroredStrategy a worker whose share "
     "of the data holds fewer batches than the others' takes empty batches at the end of each "
     "epoch. Give every worker the same number of batches (TFRecord shards of equal record "
     "counts; Spark-fed data, which tfspark deals out evenly), or turn oneDNN off on the nodes: "
     "TFCluster.run(..., env={'TF_ENABLE_ONEDNN_OPTS': '0'}) (slower on CPU)."),
)


def known_tf_crash(lines: Sequence[str]) -> Optional[str]:
    """What to do about a TensorFlow crash known by its output ``lines``, or None."""
    text = "\n".join(lines)
    for needles, advice in _KNOWN_TF_CRASHES:
        if all(needle in text for needle in needles):
            return advice
    return None


class NodeError(TFSparkError):
    """A TF node failed: its ``main_fun`` raised, its process died, or it stopped answering.

    Carries where it happened (``role``, ``index``, ``host``), the node's traceback text and the
    last lines the node printed. ``restartable`` is true when a restart of the TF cluster can
    cure the cause (the node's process killed by a signal, its executor or Python worker lost,
    a peer's death seen by TF as ``UnavailableError``); ``cause`` says it in one line;
    ``attempts`` lists the cause of every attempt when restarts ran out.
    """

    def __init__(self, role: str, index: int, host: str, message: str,
                 traceback_text: str = "", output_tail: Optional[list] = None, *,
                 restartable: bool = False, attempts: Sequence[str] = ()):
        self.role = role
        self.index = index
        self.host = host
        self.message = message
        self.traceback_text = traceback_text
        self.output_tail = list(output_tail or [])
        self.restartable = restartable
        self.attempts = list(attempts)
        self.cause = f"{role}:{index} on {host}: {message.splitlines()[0] if message else ''}"
        text = f"TF node {role}:{index} on {host} failed: {message}"
        if self.attempts:
            text += "\n" + attempts_text(self.attempts)
        if traceback_text:
            text += f"\n--- traceback from {role}:{index} ---\n{traceback_text.rstrip()}"
        if self.output_tail:
            tail = "\n".join(self.output_tail)
            text += f"\n--- last output lines of {role}:{index} ---\n{tail}"
            hint = known_tf_crash(self.output_tail)
            if hint:
                text += f"\n--- tfspark: a known TensorFlow bug ---\n{hint}"
        super().__init__(text)


def raised_in_task(error: BaseException, classes: Sequence[type]) -> Optional[TFSparkError]:
    """The tfspark error a Spark task raised, rebuilt from the Spark exception that carries it
    (a ``PythonException``/``Py4JJavaError`` whose text holds the task's traceback): an
    instance of whichever of ``classes`` the task raised, with the task's message. None if the
    task raised none of them."""
    import re
    by_name = {cls.__name__: cls for cls in classes}
    lines = str(error).splitlines()
    for i in range(len(lines) - 1, -1, -1):
        match = re.match(r"^(?:[\w.]+\.)?(\w+): (.*)$", lines[i].strip())
        if match and match.group(1) in by_name:
            message = [match.group(2)]
            for line in lines[i + 1:]:  # a message of several lines, up to the JVM's trace
                if not line.strip() or line.lstrip().startswith("at ") or line.startswith(
                        ("\tat ", "Caused by", "Driver stacktrace")):
                    break
                message.append(line)
            try:
                return by_name[match.group(1)]("\n".join(message))
            except TypeError:  # a class that takes other arguments: keep Spark's error
                return None
    return None


# raised by one part of tfspark each, defined here so that tfspark.errors holds them all


class TFMLError(TFSparkError):
    """A TFEstimator/TFModel setting or input that cannot work, and why."""


class TFRecordError(TFSparkError):
    """A DataFrame cannot be written as TFRecords, or TFRecords cannot be read as asked."""


class TFRecordCorruptError(TFRecordError):
    """A TFRecord file is truncated or fails a CRC check; names the file and byte offset."""


class FeedError(TFSparkError):
    """Data could not be delivered to a TF node in time."""


class FeedDataError(TFSparkError):
    """Data given to ``TFCluster.train``/``inference`` cannot be turned into tensors."""


class PackError(TFSparkError):
    """The environment cannot be packed or shipped."""


class ExportError(TFSparkError):
    """An export directory has no version, or a model could not be exported."""


class NotKeptError(TFSparkError):
    """A TensorFlowOnSpark feature tfspark deliberately does not keep; the message says what
    to use instead."""

    def __init__(self, feature: str, instead: str):
        super().__init__(f"TensorFlowOnSpark's {feature} is not kept in tfspark: {instead}")


class PredictError(TFSparkError):
    """A DataFrame or SavedModel that ``tfspark.predict`` cannot score, and why."""
