"""The control channel: framing, both-way authentication, refusal of strangers."""
import socket
import threading

import pytest

from tfspark.control import ChannelError, ControlClient, ControlServer, new_secret


@pytest.fixture
def server():
    received, lock = [], threading.Condition()

    def on_message(connection, message):
        with lock:
            received.append(message)
            lock.notify_all()
        if message.get("type") == "ping":
            connection.send({"type": "pong", "echo": message["payload"]})

    secret = new_secret()
    control = ControlServer(secret, on_message).start()
    yield control, secret, received, lock
    control.stop()


def _wait(lock, condition, timeout=10):
    with lock:
        assert lock.wait_for(condition, timeout)


def test_messages_flow_both_ways(server):
    control, secret, received, lock = server
    replies, arrived = [], threading.Event()
    client = ControlClient(control.address, secret,
                           lambda m: (replies.append(m), arrived.set()))
    big = b"x" * (3 << 20)  # larger than one recv
    client.send({"type": "ping", "payload": big})
    assert arrived.wait(10)
    assert replies[0] == {"type": "pong", "echo": big}
    client.close()


def test_client_without_the_secret_is_refused(server):
    control, _, received, _ = server
    with pytest.raises((ChannelError, OSError)):
        ControlClient(control.address, b"wrong secret", lambda m: None)
    assert received == []


def test_garbage_before_authentication_is_never_unpickled(server):
    control, _, received, _ = server
    with socket.create_connection(control.address, timeout=10) as sock:
        sock.recv(4 + 32)  # the challenge
        payload = b"cos\nsystem\n(S'echo pwned'\ntR."  # a pickle that would run a command
        sock.sendall(len(payload).to_bytes(4, "big") + payload)
        assert sock.recv(16) == b""  # the server hangs up
    assert received == []


def test_client_refuses_a_driver_without_the_secret():
    impostor = ControlServer(new_secret(), lambda c, m: None).start()
    try:
        with pytest.raises((ChannelError, OSError)):
            ControlClient(impostor.address, new_secret(), lambda m: None)
    finally:
        impostor.stop()


def _closed_within(sock, seconds):
    """True if the peer hangs up within ``seconds`` (whatever it sent first is skipped)."""
    import time
    deadline = time.monotonic() + seconds
    sock.settimeout(seconds)
    try:
        while time.monotonic() < deadline:
            if sock.recv(4096) == b"":
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False
    return False


def test_a_huge_announced_handshake_frame_is_refused_unread(server):
    control, _, received, _ = server
    with socket.create_connection(control.address, timeout=10) as sock:
        sock.recv(4 + 32)
        sock.sendall((1 << 30).to_bytes(4, "big") + b"x" * 1024)  # "1 GiB follows"
        assert _closed_within(sock, 2)
    assert received == []


def test_a_dribbling_peer_gets_one_deadline_for_the_whole_handshake(server, monkeypatch):
    import time
    from tfspark import control as control_module
    monkeypatch.setattr(control_module, "_HANDSHAKE_TIMEOUT", 1.0)
    control, _, _, _ = server
    with socket.create_connection(control.address, timeout=10) as sock:
        sock.recv(4 + 32)
        started = time.monotonic()
        with pytest.raises(OSError):
            for _ in range(40):  # one byte every 0.2 s: each read alone would never time out
                sock.sendall(b"\0")
                time.sleep(0.2)
        assert time.monotonic() - started < 4


def test_a_flood_of_idle_connections_does_not_keep_a_node_out(server):
    from tfspark import control as control_module
    control, secret, received, lock = server
    idle = [socket.create_connection(control.address, timeout=10) for _ in range(200)]
    try:
        replies = []
        client = ControlClient(control.address, secret,
                               lambda m: replies.append(m) if m["type"] == "pong" else None)
        client.send({"type": "ping", "payload": 7})
        _wait(lock, lambda: any(m.get("type") == "ping" for m in received))
        assert len(control_module._pending) <= control_module._MAX_PENDING
        client.close()
    finally:
        for sock in idle:
            sock.close()


def test_a_tampered_or_replayed_frame_is_dropped_before_unpickling(server):
    import pickle
    from tfspark.control import connect_authenticated
    control, secret, received, lock = server
    for tamper in ("flip", "replay"):
        connection = connect_authenticated(control.address, secret)
        connection.send({"type": "hello", "n": 1})
        _wait(lock, lambda: {"type": "hello", "n": 1} in received)
        import hashlib
        import hmac

        def signed(message, sequence):
            payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
            return bytearray(hmac.new(connection._send_key, sequence.to_bytes(8, "big")
                                      + payload, hashlib.sha256).digest() + payload)

        if tamper == "flip":  # the next frame, signed, then one byte of it changed
            frame = signed({"type": "evil"}, 1)
            frame[-3] ^= 1
        else:  # the first frame again, with its own valid MAC
            frame = signed({"type": "hello", "n": 1}, 0)
        connection._sock.sendall(len(frame).to_bytes(4, "big") + bytes(frame))
        assert _closed_within(connection._sock, 5)
        connection.close()
    assert {"type": "evil"} not in received
    assert received.count({"type": "hello", "n": 1}) == 2
