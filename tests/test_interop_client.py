"""ClientConnection against a real mosquitto broker (Debian package).

Skipped with a reason when mosquitto is missing, unless
MQTTPROTO_REQUIRE_INTEROP=1 (set by CI), which makes a missing peer a failure.
"""

from __future__ import annotations

import importlib.util
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from interop import MosquittoBroker, finish, mosquitto_pub, start_mosquitto_sub

from mqttproto import ClientConnection, ProtocolVersion, QoS, ReasonCode, Subscription
from mqttproto.config import ClientConfig
from mqttproto.events import (
    ConnectionAccepted,
    ConnectionRefused,
    Disconnected,
    Event,
    MessageReceived,
    PublishAcknowledged,
    SubscribeAcknowledged,
    UnsubscribeAcknowledged,
)

V5 = ProtocolVersion.MQTT_5_0
V311 = ProtocolVersion.MQTT_3_1_1
V31 = ProtocolVersion.MQTT_3_1
TIMEOUT = 10.0


class Driver:
    """A blocking socket driving a ClientConnection, with bounded waits."""

    def __init__(
        self, address: tuple[str, int], version: ProtocolVersion, **config: object
    ) -> None:
        self.address = address
        self.conn = ClientConnection(version, config=ClientConfig(**config))  # type: ignore[arg-type]
        self.events: list[Event] = []
        self.sock: socket.socket | None = None

    def connect(self, **kwargs: object) -> ConnectionAccepted:
        self.sock = socket.create_connection(self.address, timeout=TIMEOUT)
        self.conn.connect(**kwargs)  # type: ignore[arg-type]
        event = self.wait_for(lambda e: isinstance(e, ConnectionAccepted))
        assert isinstance(event, ConnectionAccepted)
        return event

    def flush(self) -> None:
        data = self.conn.data_to_send(time.monotonic())
        if data and self.sock is not None:
            self.sock.sendall(data)

    def wait_for(self, predicate: Callable[[Event], bool], timeout: float = TIMEOUT) -> Event:
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for event in self.events[seen:]:
                if predicate(event):
                    self.events.remove(event)
                    return event
            seen = len(self.events)
            self.flush()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out; events so far: {self.events}")
            assert self.sock is not None
            self.sock.settimeout(min(remaining, 0.5))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                data = None
            now = time.monotonic()
            if data:
                self.conn.receive_data(data, now)
            elif data == b"":
                self.conn.receive_eof(now)
            self.conn.handle_timer(now)
            self.events.extend(self.conn.events())
            if self.conn.closed and not any(predicate(e) for e in self.events):
                self.flush()
                raise AssertionError(f"connection closed; events: {self.events}")

    def messages(self, count: int) -> list[MessageReceived]:
        received = []
        for _ in range(count):
            event = self.wait_for(lambda e: isinstance(e, MessageReceived))
            assert isinstance(event, MessageReceived)
            received.append(event)
        return received

    def close(self) -> None:
        if not self.conn.closed:
            self.conn.disconnect()
        self.flush()
        if self.sock is not None:
            self.sock.close()
            self.sock = None


@pytest.mark.parametrize("version", [V31, V311, V5])
def test_qos_round_trips(mosquitto: tuple[str, int], version: ProtocolVersion) -> None:
    client = Driver(mosquitto, version)
    accepted = client.connect(client_id=f"rt-{int(version)}", keep_alive=30)
    assert accepted.session_present is False
    client.conn.subscribe([Subscription("rt/#", QoS.EXACTLY_ONCE)])
    suback = client.wait_for(lambda e: isinstance(e, SubscribeAcknowledged))
    assert suback.reason_codes == (ReasonCode.GRANTED_QOS_2,)  # type: ignore[attr-defined]
    ids = [client.conn.publish(f"rt/{q}", b"m%d" % q, qos=q) for q in (0, 1, 2)]
    messages = client.messages(3)
    assert sorted((m.topic, m.payload, int(m.qos)) for m in messages) == [
        ("rt/0", b"m0", 0),
        ("rt/1", b"m1", 1),
        ("rt/2", b"m2", 2),
    ]
    acked = {
        client.wait_for(lambda e: isinstance(e, PublishAcknowledged)).packet_id  # type: ignore[attr-defined]
        for _ in range(2)
    }
    assert acked == set(ids[1:])
    client.conn.unsubscribe("rt/#")
    client.wait_for(lambda e: isinstance(e, UnsubscribeAcknowledged))
    client.close()


def test_v5_properties_and_topic_alias_through_mosquitto(mosquitto: tuple[str, int]) -> None:
    client = Driver(mosquitto, V5, topic_alias_maximum=5)
    accepted = client.connect(client_id="props", keep_alive=30)
    assert accepted.topic_alias_maximum > 0  # mosquitto offers aliases to v5 clients
    client.conn.subscribe([Subscription("p/t", QoS.AT_LEAST_ONCE)])
    client.wait_for(lambda e: isinstance(e, SubscribeAcknowledged))
    for n in range(3):  # the second and third go out with an alias only
        client.conn.publish(
            "p/t",
            b"%d" % n,
            qos=1,
            response_topic="p/reply",
            correlation_data=b"c%d" % n,
            user_properties=[("k", "v")],
            content_type="text/plain",
            message_expiry_interval=60,
        )
    messages = client.messages(3)
    assert [m.payload for m in messages] == [b"0", b"1", b"2"]
    for n, message in enumerate(messages):
        assert message.topic == "p/t"
        assert message.response_topic == "p/reply"
        assert message.correlation_data == b"c%d" % n
        assert message.user_properties == (("k", "v"),)
        assert message.content_type == "text/plain"
        assert message.message_expiry_interval is not None
    client.close()


@pytest.mark.parametrize("version", [V311, V5])
def test_persistent_session_resumes(mosquitto: tuple[str, int], version: ProtocolVersion) -> None:
    persistent = {"session_expiry_interval": 600} if version == V5 else {}
    subscriber = Driver(mosquitto, version)
    subscriber.connect(client_id="keeper", clean_start=True, **persistent)
    subscriber.close()
    subscriber = Driver(mosquitto, version)
    subscriber.connect(client_id="keeper", clean_start=False, **persistent)
    subscriber.conn.subscribe([Subscription("s/+", QoS.AT_LEAST_ONCE)])
    subscriber.wait_for(lambda e: isinstance(e, SubscribeAcknowledged))
    subscriber.close()

    # Published while the subscriber is away: mosquitto queues it in the session.
    result = mosquitto_pub(*mosquitto, "s/1", "while-away", "-q", "1")
    assert result.returncode == 0, result.stderr

    subscriber = Driver(mosquitto, version)
    accepted = subscriber.connect(client_id="keeper", clean_start=False, **persistent)
    assert accepted.session_present is True
    (message,) = subscriber.messages(1)
    assert (message.topic, message.payload, message.qos) == (
        "s/1",
        b"while-away",
        QoS.AT_LEAST_ONCE,
    )
    subscriber.close()


def test_our_messages_reach_mosquitto_sub(mosquitto: tuple[str, int]) -> None:
    host, port = mosquitto
    sub = start_mosquitto_sub(host, port, "x/y", "-q", "1", "-V", "5", count=2, wait=10)
    publisher = Driver(mosquitto, V5)
    publisher.connect(client_id="to-sub")
    # mosquitto_sub needs a moment to subscribe: retained messages bridge it.
    # QoS 1 like what follows: a subscriber's library may hand over a QoS 2
    # message only once its handshake completes, after later QoS 1 ones.
    publisher.conn.publish("x/y", b"first", qos=1, retain=True)
    publisher.wait_for(lambda e: isinstance(e, PublishAcknowledged))
    deadline = time.monotonic() + TIMEOUT
    while sub.poll() is None and time.monotonic() < deadline:
        publisher.conn.publish("x/y", b"again", qos=1)
        publisher.wait_for(lambda e: isinstance(e, PublishAcknowledged))
        time.sleep(0.1)
    code, out, err = finish(sub)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "first"
    assert lines[1] in ("first", "again")
    publisher.conn.publish("x/y", b"", qos=1, retain=True)  # clear the retained message
    publisher.wait_for(lambda e: isinstance(e, PublishAcknowledged))
    publisher.close()


def test_keep_alive_pings_keep_the_connection(mosquitto: tuple[str, int]) -> None:
    client = Driver(mosquitto, V311)
    client.connect(client_id="pinger", keep_alive=1)
    # Over three keep-alive periods with nothing else to say, the client pings
    # and mosquitto (which closes after 1.5 periods of silence) keeps us.
    with pytest.raises(AssertionError, match="timed out"):
        client.wait_for(lambda e: isinstance(e, Disconnected), timeout=3.5)
    assert not client.conn.closed
    client.close()


def test_server_disconnect_on_takeover(mosquitto: tuple[str, int]) -> None:
    first = Driver(mosquitto, V5)
    first.connect(client_id="twin")
    second = Driver(mosquitto, V5)
    second.connect(client_id="twin")
    event = first.wait_for(lambda e: isinstance(e, Disconnected))
    assert isinstance(event, Disconnected)
    # mosquitto 2.0.11 (Debian 12) closes the old socket without DISCONNECT
    # 0x8E; newer releases send it. Either way the client sees the end.
    assert event in (
        Disconnected(ReasonCode.SESSION_TAKEN_OVER, by_server=True),
        Disconnected(ReasonCode.UNSPECIFIED_ERROR),
    )
    assert first.conn.closed
    second.close()


def test_the_documented_client_loop_runs(mosquitto: tuple[str, int]) -> None:
    path = Path(__file__).resolve().parent.parent / "docs" / "examples" / "client_loop.py"
    spec = importlib.util.spec_from_file_location("client_loop_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["client_loop_example"] = module
    try:
        spec.loader.exec_module(module)
        assert module.run(*mosquitto, timeout=TIMEOUT) == [b"hello, sans-IO"]
    finally:
        del sys.modules["client_loop_example"]


def test_mosquitto_refuses_bad_credentials(tmp_path: Path) -> None:
    passwords = tmp_path / "passwords"
    passwords.write_text("")
    with MosquittoBroker(
        [f"password_file {passwords}"], allow_anonymous=False, directory=tmp_path
    ) as broker:
        client = Driver(broker.address, V5)
        client.sock = socket.create_connection(broker.address, timeout=TIMEOUT)
        client.conn.connect(client_id="nobody", username="u", password="p")
        event = client.wait_for(lambda e: isinstance(e, ConnectionRefused))
        assert event.reason_code in (  # type: ignore[attr-defined]
            ReasonCode.BAD_USER_NAME_OR_PASSWORD,
            ReasonCode.NOT_AUTHORIZED,
        )
        assert client.conn.closed
        client.sock.close()
