"""The blocking client (mqttproto.adapters.threads.Client) on real sockets.

Against our broker (in a thread, tests/clients.py) and mosquitto; every
blocking call has a timeout, and every client is closed by its ``with``.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clients import CutProxy, ThreadedBroker, certificates, mosquitto_with
from interop import HOST

from mqttproto import ProtocolVersion, QoS
from mqttproto.adapters.threads import Client, ConnectionLostError, ReconnectPolicy
from mqttproto.events import ConnectionAccepted, Disconnected, MessageReceived

V311 = ProtocolVersion.MQTT_3_1_1
V5 = ProtocolVersion.MQTT_5_0
VERSIONS = pytest.mark.parametrize("version", [V311, V5], ids=["v311", "v5"])
WAIT = 5.0


@pytest.fixture(scope="module")
def broker() -> Iterator[ThreadedBroker]:
    with ThreadedBroker() as running:
        yield running


def roundtrip(host: str, port: int | None, **options: Any) -> None:
    with Client(host, port, connect_timeout=WAIT, **options) as client:
        assert client.subscribe("rt/all/#", qos=2, timeout=WAIT) == (QoS.EXACTLY_ONCE,)
        assert client.publish("rt/all/0", b"zero", qos=0, timeout=WAIT) is None
        for qos in (1, 2):
            ack = client.publish(f"rt/all/{qos}", f"m{qos}", qos=qos, timeout=WAIT)
            assert ack is not None and ack.reason_code < 0x80
        received = []
        for message in client.messages(timeout=WAIT):
            received.append((message.topic, message.payload, int(message.qos)))
            if len(received) == 3:
                break
        assert sorted(received) == [
            ("rt/all/0", b"zero", 0),
            ("rt/all/1", b"m1", 1),
            ("rt/all/2", b"m2", 2),
        ]
        with client.subscription("rt/one/+", qos=1, timeout=WAIT) as messages:
            client.publish("rt/one/a", b"A", qos=1, timeout=WAIT)
            message = messages.get(WAIT)
            assert message is not None and (message.topic, message.payload) == ("rt/one/a", b"A")
    # Closed: iteration ends at once.
    assert list(client.messages(timeout=WAIT)) == []
    with pytest.raises(ConnectionLostError):
        client.publish("rt/all/late", b"", qos=1, timeout=WAIT)


@VERSIONS
def test_roundtrip_our_broker(broker: ThreadedBroker, version: ProtocolVersion) -> None:
    roundtrip(HOST, broker.port, version=version, client_id="threads-rt")


@VERSIONS
def test_roundtrip_mosquitto(mosquitto: tuple[str, int], version: ProtocolVersion) -> None:
    roundtrip(*mosquitto, version=version, client_id="threads-rt")


def test_tls_our_broker(tmp_path: Path) -> None:
    certs = certificates(tmp_path)
    with ThreadedBroker(ssl=certs.server_context) as tls_broker:
        roundtrip(HOST, tls_broker.port, tls=certs.client_context)


def test_tls_websocket_unix_mosquitto(tmp_path: Path) -> None:
    certs = certificates(tmp_path)
    with mosquitto_with(tmp_path, tls=certs, websocket=True, unix=True) as listeners:
        roundtrip(HOST, listeners.tls_port, tls=certs.client_context)
        roundtrip(HOST, listeners.ws_port, transport="websocket", version=V311)
        roundtrip(listeners.unix_path or "", None, transport="unix")


@pytest.mark.parametrize("where", ["ours", "mosquitto"])
def test_request_response_with_callbacks(
    broker: ThreadedBroker, mosquitto: tuple[str, int], where: str
) -> None:
    """paho-style: the responder answers from on_message (in the I/O thread)."""
    host, port = (HOST, broker.port) if where == "ours" else mosquitto
    events: list[str] = []
    with Client(host, port, client_id="threads-responder") as responder:

        def on_message(client: Client, message: MessageReceived) -> None:
            assert message.response_topic is not None
            # From a callback, publish() queues and returns at once.
            assert (
                client.publish(
                    message.response_topic,
                    message.payload[::-1],
                    qos=1,
                    correlation_data=message.correlation_data,
                )
                is None
            )
            events.append("answered")

        responder.on_message = on_message
        responder.subscribe("svc/reverse", qos=1, timeout=WAIT)
        with Client(host, port, client_id="threads-requester") as requester:
            for word in (b"abc", b"xyz"):
                assert requester.request("svc/reverse", word, timeout=WAIT).payload == word[::-1]
            with pytest.raises(TimeoutError):
                requester.request("svc/nobody", b"?", timeout=0.2)
    assert events == ["answered", "answered"]


def test_on_connect_on_disconnect_and_reconnect(broker: ThreadedBroker) -> None:
    """Callbacks see each connection; a cut connection comes back, resumes
    the session, and QoS 1/2 messages published across the cuts all arrive."""
    connects: list[ConnectionAccepted] = []
    disconnects: list[Disconnected] = []
    reconnected = threading.Event()
    count = 60
    policy = ReconnectPolicy(initial=0.02, maximum=0.1)
    with CutProxy(broker.port) as proxy:
        sub = Client(
            HOST,
            proxy.port,
            client_id="threads-rc-sub",
            session_expiry_interval=600,
            reconnect=policy,
            rng=random.Random(3),
        )

        def on_connect(client: Client, event: ConnectionAccepted) -> None:
            connects.append(event)
            if len(connects) > 1:
                reconnected.set()

        sub.on_connect = on_connect
        sub.on_disconnect = lambda client, event: disconnects.append(event)
        with (
            sub,
            Client(
                HOST, proxy.port, client_id="threads-rc-pub", reconnect=policy, rng=random.Random(4)
            ) as pub,
        ):
            sub.subscribe("rc/#", qos=1, timeout=WAIT)
            for i in range(count):
                ack = pub.publish("rc/x", str(i).encode(), qos=1 + i % 2, timeout=WAIT)
                assert ack is not None
                if i == 20:
                    proxy.cut()
            got = set()
            for message in sub.messages(timeout=WAIT):
                got.add(int(message.payload))
                if len(got) == count:
                    break
            assert reconnected.wait(WAIT)
        assert got == set(range(count))
    assert [event.session_present for event in connects] == [False, True]
    # The cut, then the client's own DISCONNECT at the end of the block.
    assert len(disconnects) == 2


def test_connect_failure_stops_the_thread() -> None:
    with ThreadedBroker() as running:
        port = running.port
    # Nothing listens there any more.
    client = Client(HOST, port, connect_timeout=WAIT)
    with pytest.raises(OSError):
        client.connect()
    assert client._thread is not None and not client._thread.is_alive()
