"""TensorFlow's C++ start-up chatter: which lines it is, and keeping it out of a process's stderr.

TensorFlow's C++ side writes INFO/WARNING lines (oneDNN, CUDA probing) and, on every CPU-only
machine, an error about ``cuInit`` straight to file descriptor 2 when it starts. They say nothing
a user can act on. The TF nodes' output is filtered line by line as it is relayed
(:mod:`tfspark._node.spawn`); where TensorFlow starts inside a Spark Python worker (scoring),
:func:`quiet_start` filters that worker's fd 2 while TensorFlow loads. Other lines pass, in order.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from typing import Iterator

#: TF's C++ log lines (glog/absl format: level letter, date, time, thread, file:line]) of level
#: INFO or WARNING, the errors every CPU-only machine logs when TF probes for CUDA, and the
#: second line of the INFO message about CPU instructions this TF build does not use.
_TF_CHATTER = re.compile(
    r"^(?:[IW]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\]"
    r"|E\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ cuda_\w+\.cc:\d+\]"
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"
    r"|To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler "
    r"flags\.$)")


def is_tf_chatter(line: str) -> bool:
    """True for TensorFlow's C++ start-up and INFO/WARNING log lines (not shown by default)."""
    return bool(_TF_CHATTER.match(line))


@contextlib.contextmanager
def quiet_start() -> Iterator[None]:
    """Run the block (TensorFlow's import and first use) with fd 2 captured; afterwards write
    back to fd 2 every captured line that is not TF chatter."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for raw in captured:
                if not is_tf_chatter(raw.decode("utf-8", "replace").rstrip("\r\n")):
                    os.write(2, raw)
