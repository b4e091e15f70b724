"""The control channel between the driver and the TF nodes.

The driver runs one :class:`ControlServer`; each node's Spark task opens one
:class:`ControlClient` to it. Over it flow, node to driver: registration, output lines, the
node's result or error; driver to node: ``stop``. Nothing here knows about Spark or TF.

Wire format: each frame is a 4-byte big-endian length and a pickled dict. Before any frame is
unpickled both ends prove they hold the job's secret (HMAC-SHA256 challenge/response each way),
so only this job's nodes and driver can talk on it; a peer without the secret is dropped.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import pickle
import socket
import socketserver
import struct
import threading
from typing import Any, Callable, Dict, Optional, Tuple

logger = logging.getLogger(__name__)

_NONCE_BYTES = 32
_HANDSHAKE_TIMEOUT = 10.0
_MAX_FRAME = 1 << 30  # 1 GiB: results larger than this belong on a filesystem, not here
_HEADER = struct.Struct(">I")

Message = Dict[str, Any]


class ChannelError(ConnectionError):
    """The peer closed the channel, sent a malformed frame, or failed authentication."""


def new_secret() -> bytes:
    """A fresh random per-job secret."""
    return os.urandom(32)


def _digest(secret: bytes, purpose: bytes, nonce: bytes) -> bytes:
    return hmac.new(secret, purpose + nonce, hashlib.sha256).digest()


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks, remaining = [], size
    while remaining:
        chunk = sock.recv(min(remaining, 1 << 20))
        if not chunk:
            raise ChannelError("connection closed by peer")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _send_raw(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(_HEADER.pack(len(payload)) + payload)


def _recv_raw(sock: socket.socket) -> bytes:
    (size,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size))
    if size > _MAX_FRAME:
        raise ChannelError(f"frame of {size} bytes exceeds the {_MAX_FRAME}-byte limit")
    return _recv_exact(sock, size)


def _server_handshake(sock: socket.socket, secret: bytes) -> None:
    """Driver side: check the client holds ``secret``, then prove we hold it too."""
    challenge = os.urandom(_NONCE_BYTES)
    _send_raw(sock, challenge)
    reply = _recv_raw(sock)
    answer, client_challenge = reply[:-_NONCE_BYTES], reply[-_NONCE_BYTES:]
    if not hmac.compare_digest(answer, _digest(secret, b"client", challenge)):
        raise ChannelError("peer failed authentication")
    _send_raw(sock, _digest(secret, b"server", client_challenge))


def _client_handshake(sock: socket.socket, secret: bytes) -> None:
    """Node side: answer the driver's challenge, then check the driver's answer to ours."""
    challenge = _recv_raw(sock)
    own_challenge = os.urandom(_NONCE_BYTES)
    _send_raw(sock, _digest(secret, b"client", challenge) + own_challenge)
    if not hmac.compare_digest(_recv_raw(sock), _digest(secret, b"server", own_challenge)):
        raise ChannelError("driver failed authentication")


def accept_authenticated(sock: socket.socket, secret: bytes) -> None:
    """Run the driver side of the handshake on a just-accepted socket (bounded in time)."""
    sock.settimeout(_HANDSHAKE_TIMEOUT)
    try:
        _server_handshake(sock, secret)
    except ValueError as e:
        raise ChannelError(f"malformed handshake: {e}") from e
    sock.settimeout(None)


def connect_authenticated(address: Tuple[str, int], secret: bytes,
                          timeout: float = 30.0) -> socket.socket:
    """Open a TCP connection to ``address`` and prove we hold ``secret`` (and that it does)."""
    sock = socket.create_connection(address, timeout=timeout)
    try:
        _client_handshake(sock, secret)
    except BaseException:
        sock.close()
        raise
    sock.settimeout(None)
    return sock


class Connection:
    """An authenticated, framed, thread-safe-for-sending socket."""

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self._send_lock = threading.Lock()

    def send(self, message: Message) -> None:
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        with self._send_lock:
            _send_raw(self._sock, payload)

    def recv(self) -> Message:
        return pickle.loads(_recv_raw(self._sock))

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()


def tcp_server(host: str, port: int,
               handle: Callable[[socket.socket], None]) -> socketserver.ThreadingTCPServer:
    """A TCP server on ``(host, port)`` that runs ``handle(socket)`` on a thread per connection.

    ``SO_REUSEADDR`` is set, so it can bind a port that a node's Spark task holds reserved.
    Call ``serve_forever`` (on a thread of your own) to start accepting.
    """
    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            handle(self.request)

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    return Server((host, port), Handler)


class ControlServer:
    """Driver end: accepts authenticated node connections and hands their messages to a callback.

    ``on_message(connection, message)`` runs on the connection's own thread; ``on_disconnect``
    (if given) is called with the connection when its peer goes away.
    """

    def __init__(self, secret: bytes, on_message: Callable[[Connection, Message], None],
                 host: str = "127.0.0.1", port: int = 0,
                 on_disconnect: Optional[Callable[[Connection], None]] = None):
        self._secret = secret
        self._on_message = on_message
        self._on_disconnect = on_disconnect
        self._tcp = tcp_server(host, port, self._serve)

    @property
    def address(self) -> Tuple[str, int]:
        return self._tcp.server_address[:2]

    def start(self) -> "ControlServer":
        threading.Thread(target=self._tcp.serve_forever, name="tfspark-control",
                         daemon=True).start()
        return self

    def stop(self) -> None:
        self._tcp.shutdown()
        self._tcp.server_close()

    def _serve(self, sock: socket.socket) -> None:
        peer = sock.getpeername()
        try:
            accept_authenticated(sock, self._secret)
        except (ChannelError, OSError) as e:
            logger.warning("tfspark: refused control connection from %s: %s", peer, e)
            return
        connection = Connection(sock)
        try:
            while True:
                self._on_message(connection, connection.recv())
        except (ChannelError, OSError):
            pass
        finally:
            if self._on_disconnect:
                self._on_disconnect(connection)
            connection.close()


class ControlClient:
    """Node end: one authenticated connection to the driver; incoming messages go to a callback."""

    def __init__(self, address: Tuple[str, int], secret: bytes,
                 on_message: Callable[[Message], None], connect_timeout: float = 30.0):
        self._connection = Connection(connect_authenticated(address, secret, connect_timeout))
        self._on_message = on_message
        self._reader = threading.Thread(target=self._read, name="tfspark-control-reader",
                                        daemon=True)
        self._reader.start()

    def send(self, message: Message) -> None:
        self._connection.send(message)

    def close(self) -> None:
        self._connection.close()

    def _read(self) -> None:
        try:
            while True:
                self._on_message(self._connection.recv())
        except (ChannelError, OSError):
            self._on_message({"type": "disconnected"})
