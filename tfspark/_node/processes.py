"""Child processes' lifetimes, one rule for the node side and the test harnesses: whether a
process still runs, and children that die with the thread that started them (Linux)."""
from __future__ import annotations

import ctypes
import os
from typing import Callable, Optional

PR_SET_PDEATHSIG = 1


def _find_prctl():
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None  # not Linux/glibc


# Looked up here, in the parent: between fork and exec a child of a multi-threaded process must
# not dlopen (a loader lock another thread held at fork time is never released there).
_PRCTL = _find_prctl()


def die_with_parent(sig: int) -> Optional[Callable[[], None]]:
    """A ``preexec_fn`` for ``subprocess.Popen`` that has the kernel send ``sig`` to the child
    when the thread calling this (the one about to fork) exits -- with its process, or on its
    own: the kernel follows the forking thread (``prctl(PR_SET_PDEATHSIG)``, which survives
    ``execve`` but not ``fork``).

    ``None`` where ``prctl`` is unavailable (not Linux). Build it right before ``Popen``, on
    the thread that calls ``Popen``.
    """
    if _PRCTL is None:
        return None
    prctl, parent = _PRCTL, os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(sig))
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def alive(pid: int) -> bool:
    """True while process ``pid`` runs (another user's counts as running); False once it has
    exited, also while it is a zombie that its parent has not collected yet."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True  # no /proc (not Linux): kill(0) said it exists
