"""A node task's files live in a fresh private directory; what a killed task left behind is
removed by the next node task on the host."""
from __future__ import annotations

import os
import stat
import subprocess
import sys

from tfspark._node.private_dir import PRIVATE_PREFIX, PrivateDir


def test_private_dir_is_fresh_owner_only_and_sweeps_dead_tasks(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARK_LOCAL_DIRS", str(tmp_path))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    orphan = tmp_path / f"{PRIVATE_PREFIX}{gone}-abc"
    (orphan / "spill").mkdir(parents=True)
    (orphan / "context.pkl").write_bytes(b"the key")
    alive = tmp_path / f"{PRIVATE_PREFIX}{os.getpid()}-def"
    alive.mkdir()
    unrelated = tmp_path / "someone-else"
    unrelated.mkdir()

    private = PrivateDir()
    made = private.path

    assert not orphan.exists()  # its process is gone: removed
    assert alive.exists() and unrelated.exists()  # a live task's, and what is not ours
    assert os.path.dirname(made) == str(tmp_path)
    assert os.path.basename(made).startswith(f"{PRIVATE_PREFIX}{os.getpid()}-")
    assert stat.S_IMODE(os.stat(made).st_mode) == 0o700
    another = PrivateDir()
    assert another.path != made  # never an existing path
    for each in (private, another):
        each.remove()
        assert not os.path.exists(each.path)


def test_a_killed_tasks_directory_is_removed_by_its_janitor(tmp_path):
    import signal
    import time
    task = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from tfspark._node.private_dir import PrivateDir; "
         "print(PrivateDir().path, flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, env=dict(os.environ, SPARK_LOCAL_DIRS=str(tmp_path)))
    path = task.stdout.readline().strip()
    assert os.path.isdir(path)
    os.kill(task.pid, signal.SIGKILL)
    task.wait()
    deadline = time.monotonic() + 10
    while os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not os.path.exists(path)


def test_a_directory_created_in_advance_is_never_used(tmp_path, monkeypatch):
    import tempfile
    monkeypatch.setenv("SPARK_LOCAL_DIRS", str(tmp_path))
    planted = tmp_path / f"{PRIVATE_PREFIX}{os.getpid()}-taken"  # another user's guess
    planted.mkdir(mode=0o777)
    monkeypatch.setattr(tempfile, "_get_candidate_names", lambda: iter(["taken", "fresh"]))
    private = PrivateDir()
    try:
        assert private.path == str(tmp_path / f"{PRIVATE_PREFIX}{os.getpid()}-fresh")
        assert stat.S_IMODE(os.stat(private.path).st_mode) == 0o700
    finally:
        private.remove()


def test_scratch_dirs_go_in_the_node_folder_when_there_is_one(tmp_path, monkeypatch):
    from tfspark.constants import NODE_SCRATCH_ENV as SCRATCH_ENV
    from tfspark.fs import scratch_dir
    monkeypatch.setenv(SCRATCH_ENV, str(tmp_path / "node" / "tmp"))
    made = scratch_dir("tfspark-mirror-")
    assert os.path.dirname(made) == str(tmp_path / "node" / "tmp")
    monkeypatch.delenv(SCRATCH_ENV)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    elsewhere = scratch_dir("tfspark-mirror-")
    assert os.path.dirname(elsewhere) == str(tmp_path) and os.path.isdir(elsewhere)
