"""Starting the test harnesses' daemons so that they die with the Python process that started them.

Python's default action on SIGTERM (and SIGKILL, always) ends the process without running
``__exit__``/``finally``, so ``stop()`` alone cannot promise that a killed test run leaves no
daemon behind. On Linux the kernel can: ``prctl(PR_SET_PDEATHSIG, sig)`` in the child, before
exec, has it sent ``sig`` when its parent dies, however the parent dies. The setting survives
``execve`` (so ``bin/spark-class`` -> ``exec java`` keeps it) but not ``fork`` (grandchildren,
e.g. Spark executors or YARN containers, are ended by the daemon's own shutdown, not by this).

Caveat: the kernel fires PDEATHSIG when the *thread* that forked the child exits, not when the
process does. :func:`spawn` therefore forks from the main thread when called on it, and from
one long-lived helper thread otherwise, so a cluster started from a short-lived thread (a
``ThreadPoolExecutor`` task, say) is not torn down the moment that thread ends.
"""
from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
from concurrent.futures import Future
from typing import Optional

from tfspark._node.processes import _PRCTL, die_with_parent  # noqa: F401 - also for the tests

_spawner: Optional["queue.SimpleQueue"] = None
_spawner_lock = threading.Lock()


def _forget_spawner() -> None:
    global _spawner, _spawner_lock
    _spawner, _spawner_lock = None, threading.Lock()  # a forked child has no spawner thread


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_spawner)


def _spawner_loop(jobs: "queue.SimpleQueue") -> None:
    while True:
        future, sig, args, kwargs = jobs.get()
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(subprocess.Popen(args, preexec_fn=die_with_parent(sig),
                                                   **kwargs))
            except BaseException as e:  # handed to the caller
                future.set_exception(e)


def spawn(args, *, die_with_parent_signal: Optional[int] = signal.SIGTERM,
          **kwargs) -> subprocess.Popen:
    """``subprocess.Popen(args, **kwargs)``; unless ``die_with_parent_signal`` is ``None``, the
    child gets that signal when this process dies, by any signal (Linux).

    Forks on the calling thread if it is the main thread, else on a helper thread that lives
    as long as the process (PDEATHSIG follows the forking thread, not the process).
    """
    if "preexec_fn" in kwargs:
        raise TypeError("spawn() sets preexec_fn itself")
    if die_with_parent_signal is None or _PRCTL is None:
        return subprocess.Popen(args, **kwargs)
    if threading.current_thread() is threading.main_thread():
        return subprocess.Popen(args, preexec_fn=die_with_parent(die_with_parent_signal),
                                **kwargs)
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            _spawner = queue.SimpleQueue()
            threading.Thread(target=_spawner_loop, args=(_spawner,), daemon=True,
                             name="tfspark-testing-spawner").start()
    future: Future = Future()
    _spawner.put((future, die_with_parent_signal, args, kwargs))
    return future.result()
