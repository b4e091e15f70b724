"""The node process starts its background TensorFlow import only while "go" has not come yet."""
from __future__ import annotations

import subprocess
import sys

CHILD = """
import sys, time
from tfspark._node.process import _go_is_waiting
print(_go_is_waiting(), flush=True)          # nothing written yet
deadline = time.monotonic() + 30
while not _go_is_waiting() and time.monotonic() < deadline:
    time.sleep(0.01)
print(_go_is_waiting(), sys.stdin.buffer.readline() == b"go\\n", flush=True)
"""


def test_go_is_waiting_tells_whether_the_tasks_line_is_there():
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "False"
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().split() == ["True", "True"]
    finally:
        child.kill()
        child.wait()
