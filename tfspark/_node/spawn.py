"""A TF node's own process, seen from its Spark task: started, told to go, heard, stopped.

The task (:mod:`tfspark._node.task`) starts the process (:mod:`tfspark._node.process`) early, in the
task's folder, and later writes the node's context and payload there and ``GO`` to its stdin.
The process answers with an outcome file (and its return value) in the same folder. Its output
lines (and the chief's ``model.fit`` progress events) are forwarded as they come; it dies with
the task's Python worker (Linux), and is stopped with SIGTERM, then SIGKILL.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

from tfspark import constants
from tfspark._node import fit_progress
from tfspark._node.processes import die_with_parent
from tfspark.tf_chatter import is_tf_chatter

#: The task's and the process's files in the task's folder.
OUTCOME_FILE, VALUE_FILE, PAYLOAD_FILE, CONTEXT_FILE = (
    "outcome.json", "value.pkl", "payload.pkl", "context.pkl")

#: What a node's task writes to its process's stdin once the context and payload are written.
GO = b"go\n"

#: How the process ended, in its outcome file.
OK, ERROR = "ok", "error"

#: TF errors a node's ``main_fun`` may raise because a peer died (a collective or gRPC call to a
#: node that is gone): a restart of the cluster cures them. Any other exception is the user's.
RESTARTABLE_TF_ERRORS = ("UnavailableError", "AbortedError")

#: Sends one message to the driver: ``send("log", stream=..., line=...)``.
Send = Callable[..., None]


class NodeProcess:
    """A started node process, waiting for :meth:`go` (its context is in its folder)."""

    def __init__(self, popen: subprocess.Popen, forwarders: List[threading.Thread]):
        self.popen, self.forwarders, self.went = popen, forwarders, False

    def go(self) -> None:
        self.went = True
        try:
            self.popen.stdin.write(GO)
            self.popen.stdin.close()
        except OSError:
            pass  # it has exited already: its outcome (or exit status) says why

    def wait(self, stop: threading.Event) -> bool:
        """Wait for the process to end; stop it once ``stop`` is set. True if it was stopped."""
        while self.popen.poll() is None:
            if stop.wait(constants.NODE_POLL_SECS):
                terminate(self.popen)
                return True
        return False

    def join_output(self) -> None:
        for forwarder in self.forwarders:
            forwarder.join()

    def discard(self) -> None:
        """Stop it if it never got its context (the rendezvous failed or the task stopped)."""
        if not self.went:
            terminate(self.popen)
            for forwarder in self.forwarders:
                forwarder.join(5)


def spawn(workdir: str, env: Dict[str, str], send: Send, *, label: str, verbose: bool,
          echo: bool, reports_progress: bool, serves: bool) -> NodeProcess:
    """Start ``python -m tfspark._node.process workdir`` with ``env``; forward its output lines
    to ``send`` (and, with ``echo``, to this executor's log), and its ``model.fit`` progress
    events with ``reports_progress``. A process that only ``serves`` runs in ``workdir``."""
    progress_read, progress_write = os.pipe() if reports_progress else (None, None)
    if reports_progress:
        env = dict(env, **{fit_progress.REPORT_FD: str(progress_write)})
    try:
        popen = subprocess.Popen(
            [sys.executable, "-m", "tfspark._node.process", workdir],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, start_new_session=True, preexec_fn=die_with_parent(signal.SIGKILL),
            pass_fds=(progress_write,) if reports_progress else (),
            cwd=workdir if serves else None)  # see _strategies.pss.FEED_DIR
    finally:
        if reports_progress:
            os.close(progress_write)  # the child holds its own copy
    forwarders = [forward_lines(popen.stdout, "stdout", send, label, verbose, echo),
                  forward_lines(popen.stderr, "stderr", send, label, verbose, echo)]
    if reports_progress:
        forwarders.append(_forward_progress(os.fdopen(progress_read, "rb"), send))
    return NodeProcess(popen, forwarders)


def read_outcome(workdir: str, returncode: int) -> Optional[Tuple[str, Dict[str, Any], bytes]]:
    """``(OK, {}, value)`` or ``(ERROR, {message, traceback, restartable}, b"")`` from the
    process's outcome file; None if it wrote none (it was stopped, killed or crashed: see
    :func:`exit_error`)."""
    outcome_path = os.path.join(workdir, OUTCOME_FILE)
    if not os.path.exists(outcome_path):
        return None
    with open(outcome_path) as f:
        outcome = json.load(f)
    if outcome["status"] == OK:
        with open(os.path.join(workdir, VALUE_FILE), "rb") as f:
            return OK, {}, f.read()
    return ERROR, {"message": outcome["message"], "traceback": outcome["traceback"],
                   "restartable": outcome.get("error_type") in RESTARTABLE_TF_ERRORS}, b""


def exit_error(returncode: int) -> Tuple[str, Dict[str, Any], bytes]:
    """The error of a process that ended without an outcome file (killed, crashed)."""
    if returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else ""
        message = f"its process was killed by signal {-returncode} {name}".rstrip()
    else:
        message = f"its process exited with code {returncode} without reporting a result"
    return ERROR, {"message": message, "restartable": returncode < 0}, b""


def forward_lines(pipe, stream: str, send: Send, label: str, verbose: bool, echo: bool,
                  prefix: str = "") -> threading.Thread:
    """Copy a process's lines to the driver (best effort; without TF's C++ chatter unless
    ``verbose``) and, with ``echo``, all of them to this executor's log."""
    def copy() -> None:
        to_driver = True
        for raw in iter(pipe.readline, b""):
            # A progress bar redraws with '\r': keep what a terminal would show last.
            line = prefix + raw.decode("utf-8", "replace").rstrip("\r\n").rsplit("\r", 1)[-1]
            if echo:
                print(f"[{label}] {line}", file=sys.stderr, flush=True)
            if not verbose and is_tf_chatter(line):
                continue
            if to_driver:
                try:
                    send("log", stream=stream, line=line)
                except OSError:
                    to_driver = False
        pipe.close()

    thread = threading.Thread(target=copy, name=f"tfspark-{stream}", daemon=True)
    thread.start()
    return thread


def _forward_progress(pipe, send: Send) -> threading.Thread:
    """Relay the chief's ``model.fit`` progress events (JSON lines) to the driver."""
    def copy() -> None:
        for raw in iter(pipe.readline, b""):
            try:
                send("progress", event=json.loads(raw))
            except (OSError, ValueError):
                pass  # progress is best effort
        pipe.close()

    thread = threading.Thread(target=copy, name="tfspark-progress", daemon=True)
    thread.start()
    return thread


def terminate(process: subprocess.Popen) -> None:
    """SIGTERM the process group, then SIGKILL it if it has not exited within the grace period."""
    for sig, wait in ((signal.SIGTERM, constants.NODE_STOP_GRACE_SECS), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue
