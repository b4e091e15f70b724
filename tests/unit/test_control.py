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
