"""Whether a process is still running: one rule for the node side and the test harnesses."""
from __future__ import annotations

import os


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
