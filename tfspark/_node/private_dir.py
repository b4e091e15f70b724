"""A node task's private scratch directory: its payload, context, spills, staged files.

Created fresh and private for each task under the executor's local dirs, and removed however
the task ends: by the task itself, by a janitor process if the task is killed, or by the next
node task on the host (:func:`remove_orphans`).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from typing import Optional

from tfspark import constants
from tfspark._node.processes import alive

#: Names of the task directories of :class:`PrivateDir`: ``tfspark-task-<pid>-<random>``.
PRIVATE_PREFIX = "tfspark-task-"

#: Set in a node's process: see :func:`tfspark.fs.scratch_dir`.
SCRATCH_ENV = constants.NODE_SCRATCH_ENV


#: Removes a task's directory once the task's process is gone (run as a separate process).
_JANITOR = """
import os, shutil, sys, time
parent, path = int(sys.argv[1]), sys.argv[2]
try:
    import select
    select.select([os.pidfd_open(parent)], [], [])  # readable once the parent has exited
except (AttributeError, OSError):
    while True:
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            break
        time.sleep(1)
shutil.rmtree(path, ignore_errors=True)
"""


class PrivateDir:
    """A new directory for one node task's files (payload, context, spills, staged files),
    private to this user (0700) and never an existing path (``mkdtemp``: ``O_EXCL``), under
    the executor's local dirs, named after this process. :meth:`remove` deletes it when the
    task ends; if the task's process is killed first, a small janitor process started with it
    deletes it, and failing that the next node task on the host does (:func:`remove_orphans`).
    """

    def __init__(self):
        base = executor_local_dir() or tempfile.gettempdir()
        remove_orphans(base)
        self.path = tempfile.mkdtemp(prefix=f"{PRIVATE_PREFIX}{os.getpid()}-", dir=base)
        try:
            self._janitor: Optional[subprocess.Popen] = subprocess.Popen(
                [sys.executable, "-S", "-c", _JANITOR, str(os.getpid()), self.path],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True)
        except OSError:
            self._janitor = None  # the sweep still removes what a killed task leaves

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        if self._janitor is not None:  # this Python worker lives on: so would the janitor
            self._janitor.kill()
            self._janitor.wait()


def remove_orphans(base: str) -> None:
    """Remove this user's task directories in ``base`` whose process is gone."""
    try:
        entries = list(os.scandir(base))
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(PRIVATE_PREFIX):
            continue
        pid = entry.name[len(PRIVATE_PREFIX):].split("-", 1)[0]
        try:
            owned = entry.stat(follow_symlinks=False).st_uid == os.getuid()
        except OSError:
            continue
        if owned and entry.is_dir(follow_symlinks=False) and pid.isdigit() and not alive(
                int(pid)):
            shutil.rmtree(entry.path, ignore_errors=True)


def executor_local_dir() -> Optional[str]:
    """The executor's scratch disk (YARN's/Spark's local dirs), else the system temp dir."""
    for variable in ("SPARK_LOCAL_DIRS", "LOCAL_DIRS"):
        for folder in os.environ.get(variable, "").split(","):
            if folder and os.path.isdir(folder):
                return folder
    return None
