"""tfspark.testing._process: a harness daemon dies with the Python process that started it.

`cat` stands in for a daemon: it echoes a line while it lives and its stdout reaches EOF once it
is gone, so every outcome here is a condition seen on a pipe, never a guess after a sleep. The
same mechanism on the real Spark and Hadoop daemons: tests/spark/test_harness_kill.py.
"""
from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from tfspark.testing._process import _PRCTL, die_with_parent, spawn

pytestmark = pytest.mark.skipif(_PRCTL is None, reason="PR_SET_PDEATHSIG is Linux-only")

TIMEOUT = 30

# Starts `cat` reading fd argv[1] and writing fd argv[2], says so, then waits to be killed
# (or, with "exit", returns at once like `python -m tfspark.testing.hadoop start`).
PARENT = textwrap.dedent("""\
    import signal, sys, time
    from tfspark.testing._process import spawn
    sig = None if sys.argv[3] == "none" else signal.SIGTERM
    cat = spawn(["cat"], stdin=int(sys.argv[1]), stdout=int(sys.argv[2]),
                pass_fds=(int(sys.argv[1]), int(sys.argv[2])), start_new_session=True,
                die_with_parent_signal=sig)
    print(cat.pid, flush=True)
    if sys.argv[4] != "exit":
        time.sleep(600)
""")


def _read_line(fd: int, timeout: float = TIMEOUT) -> bytes:
    """One line from ``fd``; b"" at EOF (every writer is gone)."""
    data, deadline = b"", time.monotonic() + timeout
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"nothing on the pipe after {timeout}s (read {data!r})")
        chunk = os.read(fd, 1)
        if not chunk:
            return data
        data += chunk
    return data


def _gone(pid: int) -> bool:
    """Exited: no such process, or a zombie not reaped yet."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True


class _Cat:
    """`cat` started by a separate Python process, which the test then ends."""

    def __init__(self, tmp_path, die_with_parent_signal: str, parent_exits: bool = False):
        self.to_cat_r, self.to_cat = os.pipe()
        self.from_cat, self.from_cat_w = os.pipe()
        self.parent = subprocess.Popen(
            [sys.executable, "-c", PARENT, str(self.to_cat_r), str(self.from_cat_w),
             die_with_parent_signal, "exit" if parent_exits else "wait"],
            stdout=subprocess.PIPE, pass_fds=(self.to_cat_r, self.from_cat_w), cwd=tmp_path)
        os.close(self.to_cat_r)
        os.close(self.from_cat_w)  # from now on only `cat` holds the write end
        self.pid = int(_read_line(self.parent.stdout.fileno()))

    def echo(self, line: bytes = b"ping\n") -> bytes:
        try:
            os.write(self.to_cat, line)
        except BrokenPipeError:
            return b""
        return _read_line(self.from_cat)

    def close(self) -> None:
        if self.parent.poll() is None:
            self.parent.kill()
        self.parent.wait()
        self.parent.stdout.close()
        if self.to_cat is not None:
            os.close(self.to_cat)  # a cat still running reads EOF and exits
        os.close(self.from_cat)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_daemon_dies_when_its_python_is_killed(tmp_path, sig):
    cat = _Cat(tmp_path, "sigterm")
    try:
        assert cat.echo() == b"ping\n"
        cat.parent.send_signal(sig)
        assert cat.parent.wait(TIMEOUT) == -sig
        # EOF on cat's stdout: the kernel SIGTERMed it when its parent died
        assert _read_line(cat.from_cat) == b""
        deadline = time.monotonic() + TIMEOUT
        while not _gone(cat.pid):
            assert time.monotonic() < deadline, f"cat {cat.pid} outlived its parent"
            time.sleep(0.05)
    finally:
        cat.close()


def test_daemon_without_die_with_parent_outlives_its_python(tmp_path):
    """What the Hadoop CLI's `start` relies on: its daemons keep running after it returns."""
    cat = _Cat(tmp_path, "none", parent_exits=True)
    try:
        assert cat.parent.wait(TIMEOUT) == 0
        # the parent has exited (and been reaped): a death signal would already be pending
        assert cat.echo() == b"ping\n"
        os.close(cat.to_cat)  # how this `cat` is stopped: EOF on its stdin
        cat.to_cat = None
        assert _read_line(cat.from_cat) == b""
    finally:
        cat.close()


def _spawn_in_thread(start) -> subprocess.Popen:
    """``start()`` on a thread that has fully exited (its kernel task gone) on return."""
    result = []
    thread = threading.Thread(target=lambda: result.append(start()))
    thread.start()
    thread.join(TIMEOUT)
    deadline = time.monotonic() + TIMEOUT
    while os.path.exists(f"/proc/self/task/{thread.native_id}"):
        assert time.monotonic() < deadline, "the thread did not exit"
        time.sleep(0.01)
    return result[0]


def _echo(cat: subprocess.Popen) -> bytes:
    try:
        cat.stdin.write(b"ping\n")
        cat.stdin.flush()
    except BrokenPipeError:
        return b""
    return _read_line(cat.stdout.fileno())


def test_spawn_from_a_short_lived_thread_keeps_the_daemon():
    cat = _spawn_in_thread(lambda: spawn(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE))
    try:
        assert _echo(cat) == b"ping\n"
    finally:
        cat.stdin.close()
        assert cat.wait(TIMEOUT) == 0
        cat.stdout.close()


def test_pdeathsig_follows_the_forking_thread():
    """The caveat spawn() works around: a plain Popen with die_with_parent() on a thread that
    then ends has its child killed although the process lives on."""
    cat = _spawn_in_thread(lambda: subprocess.Popen(
        ["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, preexec_fn=die_with_parent(signal.SIGTERM)))
    try:
        assert _echo(cat) == b""
        assert cat.wait(TIMEOUT) == -signal.SIGTERM
    finally:
        cat.kill()
        cat.wait()
        try:
            cat.stdin.close()
        except BrokenPipeError:
            pass
        cat.stdout.close()
