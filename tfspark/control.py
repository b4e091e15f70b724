"""The control channel between the driver and the TF nodes.

The driver runs one :class:`ControlServer`; each node's Spark task opens one
:class:`ControlClient` to it. Over it flow, node to driver: registration, output lines, the
node's result or error; driver to node: ``stop``. Nothing here knows about Spark or TF.

Wire format: each frame is a 4-byte big-endian length, an HMAC-SHA256 and a pickled dict.
Before any frame is unpickled both ends prove they hold the job's secret (HMAC-SHA256
challenge/response each way, in frames of a few dozen bytes, within one deadline), so only
this job's nodes and driver can talk on it; a peer without the secret is dropped having made
this process hold a few dozen bytes. After the handshake, each frame's MAC over (sequence
number, payload), keyed per connection and direction, is checked before it is unpickled.
"""
from __future__ import annotations

import collections
import contextlib
import hashlib
import hmac
import logging
import os
import pickle
import socket
import socketserver
import struct
import threading
import time
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

logger = logging.getLogger(__name__)

_NONCE_BYTES = 32
_MAC_BYTES = 32  # HMAC-SHA256
_HANDSHAKE_TIMEOUT = 10.0  # for the whole handshake, however slowly the peer sends
_HANDSHAKE_FRAME = 2 * _NONCE_BYTES + _MAC_BYTES  # the largest frame a handshake has
_MAX_PENDING = 64  # handshakes served at once per process; more peers are dropped at once
_MAX_FRAME = 1 << 30  # 1 GiB: results larger than this belong on a filesystem, not here
_HEADER = struct.Struct(">I")
_SEQUENCE = struct.Struct(">Q")

Message = Dict[str, Any]



class ChannelError(ConnectionError):
    """The peer closed the channel, sent a malformed or tampered frame, or failed
    authentication."""


def new_secret() -> bytes:
    """A fresh random per-job secret."""
    return os.urandom(32)


def _digest(secret: bytes, purpose: bytes, nonce: bytes) -> bytes:
    return hmac.new(secret, purpose + nonce, hashlib.sha256).digest()


class _PendingHandshakes:
    """The sockets whose handshake this process is serving, at most ``limit``: admitting one
    more drops the oldest (a real peer's handshake takes a round trip or two, so only a peer
    that stalls is dropped, and a flood of them cannot keep a node or the driver from being
    reached)."""

    def __init__(self, limit: int):
        self.limit = limit
        self._lock = threading.Lock()
        self._socks: "collections.OrderedDict[socket.socket, None]" = collections.OrderedDict()

    @contextlib.contextmanager
    def admitted(self, sock: socket.socket) -> Iterator[None]:
        with self._lock:
            while len(self._socks) >= self.limit:
                oldest, _ = self._socks.popitem(last=False)
                try:
                    oldest.shutdown(socket.SHUT_RDWR)  # its handshake fails at once
                except OSError:
                    pass
            self._socks[sock] = None
        try:
            yield
        finally:
            with self._lock:
                self._socks.pop(sock, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._socks)


_pending = _PendingHandshakes(_MAX_PENDING)


class _Deadline:
    """One time limit for a whole exchange: each read may wait only for what is left."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._at = time.monotonic() + seconds

    def remaining(self) -> float:
        left = self._at - time.monotonic()
        if left <= 0:
            raise ChannelError(f"the handshake took longer than {self.seconds}s")
        return left


def _recv_exact(sock: socket.socket, size: int, deadline: Optional[_Deadline] = None) -> bytes:
    chunks, remaining = [], size
    while remaining:
        if deadline is not None:
            sock.settimeout(deadline.remaining())
        try:
            chunk = sock.recv(min(remaining, 1 << 20))
        except socket.timeout as e:
            if deadline is not None:
                deadline.remaining()  # raises the handshake's own error once it has run out
            raise ChannelError(f"timed out reading from the peer: {e}") from e
        if not chunk:
            raise ChannelError("connection closed by peer")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _send_raw(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(_HEADER.pack(len(payload)) + payload)


def _recv_raw(sock: socket.socket, limit: int = _MAX_FRAME,
              deadline: Optional[_Deadline] = None) -> bytes:
    (size,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size, deadline))
    if size > limit:
        raise ChannelError(f"frame of {size} bytes exceeds the {limit}-byte limit")
    return _recv_exact(sock, size, deadline)


def _session_keys(secret: bytes, server_nonce: bytes, client_nonce: bytes
                  ) -> Tuple[bytes, bytes]:
    """Per-connection MAC keys: (client to server, server to client)."""
    nonces = server_nonce + client_nonce
    return _digest(secret, b"frames:client", nonces), _digest(secret, b"frames:server", nonces)


def _server_handshake(sock: socket.socket, secret: bytes, deadline: _Deadline) -> "Connection":
    """Driver side: check the client holds ``secret``, then prove we hold it too."""
    challenge = os.urandom(_NONCE_BYTES)
    _send_raw(sock, challenge)
    reply = _recv_raw(sock, _HANDSHAKE_FRAME, deadline)
    answer, client_challenge = reply[:-_NONCE_BYTES], reply[-_NONCE_BYTES:]
    if len(client_challenge) != _NONCE_BYTES or not hmac.compare_digest(
            answer, _digest(secret, b"client", challenge)):
        raise ChannelError("peer failed authentication")
    _send_raw(sock, _digest(secret, b"server", client_challenge))
    from_client, to_client = _session_keys(secret, challenge, client_challenge)
    return Connection(sock, send_key=to_client, recv_key=from_client)


def _client_handshake(sock: socket.socket, secret: bytes, deadline: _Deadline) -> "Connection":
    """Node side: answer the driver's challenge, then check the driver's answer to ours."""
    challenge = _recv_raw(sock, _HANDSHAKE_FRAME, deadline)
    own_challenge = os.urandom(_NONCE_BYTES)
    _send_raw(sock, _digest(secret, b"client", challenge) + own_challenge)
    if not hmac.compare_digest(_recv_raw(sock, _HANDSHAKE_FRAME, deadline),
                               _digest(secret, b"server", own_challenge)):
        raise ChannelError("driver failed authentication")
    to_server, from_server = _session_keys(secret, challenge, own_challenge)
    return Connection(sock, send_key=to_server, recv_key=from_server)


def accept_authenticated(sock: socket.socket, secret: bytes) -> "Connection":
    """Run the server side of the handshake on a just-accepted socket: bounded in time (one
    deadline for the whole of it), in memory (frames of a few dozen bytes) and in number (at
    most ``_MAX_PENDING`` at once in this process: see :class:`_PendingHandshakes`)."""
    with _pending.admitted(sock):
        try:
            connection = _server_handshake(sock, secret, _Deadline(_HANDSHAKE_TIMEOUT))
        except ValueError as e:
            raise ChannelError(f"malformed handshake: {e}") from e
    sock.settimeout(None)
    return connection


def connect_authenticated(address: Tuple[str, int], secret: bytes,
                          timeout: float = 30.0) -> "Connection":
    """Open a TCP connection to ``address`` and prove we hold ``secret`` (and that it does)."""
    sock = socket.create_connection(address, timeout=timeout)
    try:
        connection = _client_handshake(sock, secret,
                                       _Deadline(max(timeout, _HANDSHAKE_TIMEOUT)))
    except BaseException:
        sock.close()
        raise
    sock.settimeout(None)
    return connection


class Connection:
    """An authenticated, framed, thread-safe-for-sending socket.

    Every frame carries an HMAC-SHA256 over (its sequence number, its payload) with a key
    derived in the handshake for its direction, checked before the payload is unpickled: a
    frame tampered with, reordered, replayed or reflected ends the connection (and is logged).
    """

    def __init__(self, sock: socket.socket, send_key: bytes, recv_key: bytes):
        self._sock = sock
        self._send_lock = threading.Lock()
        self._send_key, self._recv_key = send_key, recv_key
        self._sent = self._received = 0

    def send(self, message: Message) -> None:
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        with self._send_lock:
            mac = hmac.new(self._send_key, _SEQUENCE.pack(self._sent) + payload,
                           hashlib.sha256).digest()
            self._sent += 1
            _send_raw(self._sock, mac + payload)

    def recv(self) -> Message:
        frame = _recv_raw(self._sock)
        mac, payload = frame[:_MAC_BYTES], frame[_MAC_BYTES:]
        expected = hmac.new(self._recv_key, _SEQUENCE.pack(self._received) + payload,
                            hashlib.sha256).digest()
        if not hmac.compare_digest(mac, expected):
            logger.warning("tfspark: dropped a connection whose frame %d failed its integrity "
                           "check (tampered, reordered or replayed)", self._received)
            raise ChannelError(f"frame {self._received} failed its integrity check")
        self._received += 1
        return pickle.loads(payload)

    def settimeout(self, seconds: Optional[float]) -> None:
        self._sock.settimeout(seconds)

    def makefile(self, mode: str) -> Any:
        """The socket as a file, for a raw stream after the framed header (the feed's data)."""
        return self._sock.makefile(mode)

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
        request_queue_size = socket.SOMAXCONN  # a burst of connections waits in the kernel
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
            connection = accept_authenticated(sock, self._secret)
        except (ChannelError, OSError) as e:
            logger.warning("tfspark: refused control connection from %s: %s", peer, e)
            return
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
        self._connection = connect_authenticated(address, secret, connect_timeout)
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
