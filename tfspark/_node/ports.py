"""Ports a node's task holds for its process (TF's gRPC server, the feed, TensorBoard)."""
from __future__ import annotations

import socket
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def reserved_port(host: str, port: int = 0) -> Iterator[int]:
    """Reserve a free TCP port on ``host`` (``port``, else any) for as long as the block runs;
    OSError if ``port`` is taken.

    The socket is bound (with ``SO_REUSEADDR``) but never listens: other processes cannot bind the
    port, while TensorFlow's gRPC server, which also sets ``SO_REUSEADDR``, can. So no other
    process can take the port between reservation and the TF server's start.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        yield sock.getsockname()[1]
    finally:
        sock.close()
