"""TensorBoard for a TF cluster (``TFCluster.run(tensorboard=True)``): served from the chief's
task while the node runs, on ``log_dir`` or, without one, on a folder of the chief's own."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

from tfspark._node.ports import reserved_port
from tfspark._node.processes import die_with_parent
from tfspark._node.spawn import forward_lines, terminate


def log_dir(given: Optional[str], tensorboard: bool, workdir: str) -> Optional[str]:
    """``log_dir`` as given; with TensorBoard and none given, a folder of this node's own
    (as TensorFlowOnSpark's ``tensorboard_<executor>``), gone when the node ends."""
    if given or not tensorboard:
        return given
    local = os.path.join(workdir, "tensorboard")
    os.makedirs(local, exist_ok=True)
    return local


@contextmanager
def served(host: str, logs: str, send: Callable[..., None], label: str, verbose: bool,
           echo: bool) -> Iterator[str]:
    """TensorBoard on ``logs`` at ``http://host:port`` (its output forwarded as the node's
    stderr) for as long as the block runs."""
    with reserved_port(host) as port:
        process = subprocess.Popen(
            [sys.executable, "-m", "tensorboard.main", "--logdir", logs,
             "--host", host, "--port", str(port)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=die_with_parent(signal.SIGKILL))
        forwarder = forward_lines(process.stdout, "stderr", send, label, verbose, echo,
                                  prefix="tensorboard: ")
        try:
            yield f"http://{host}:{port}"
        finally:
            terminate(process)
            forwarder.join(5)
