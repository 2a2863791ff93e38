"""``docs/examples/own_server.py``: a server written only against
:class:`~mqttproto.ServerConnection`, without a Broker, serving real clients.

The example runs as a process (a free port, stopped through its handle) and
is driven by paho-mqtt (MQTT 3.1.1 and 5) and by raw sockets: accept and
refuse, QoS 0, 1 and 2 in both directions, subscribe and unsubscribe, every
message in its file, the Receive Maximum on the wire, keep-alive and
malformed input.
"""

from __future__ import annotations

import queue
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from interop import HOST, import_paho
from test_interop_broker import VERSIONS, Paho
from test_security_broker import RawClient

from mqttproto import ProtocolVersion, QoS, ReasonCode
from mqttproto.packets import (
    ConnAckPacket,
    DisconnectPacket,
    PublishPacket,
    PubRecPacket,
    PubRelPacket,
    SubAckPacket,
    SubscribePacket,
    Subscription,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "own_server.py"
WAIT = 10.0
V5 = ProtocolVersion.MQTT_5_0


class ExampleServer:
    def __init__(self, log: Path) -> None:
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, str(EXAMPLE), "--port", "0", "--log", str(log)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: queue.Queue[str] = queue.Queue()
        assert self.process.stdout is not None
        stdout = self.process.stdout
        threading.Thread(target=lambda: [lines.put(line) for line in stdout], daemon=True).start()
        line = lines.get(timeout=WAIT)
        assert line.startswith("listening on port"), line
        self.port = int(line.split()[-1])

    def stop(self) -> str:
        self.process.terminate()
        try:
            self.process.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(WAIT)
        assert self.process.stderr is not None
        return self.process.stderr.read()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ExampleServer]:
    running = ExampleServer(tmp_path / "messages.log")
    try:
        yield running
    finally:
        errors = running.stop()
    assert "Traceback" not in errors, errors


@pytest.mark.parametrize("v5", VERSIONS)
def test_paho_clients_publish_subscribe_and_unsubscribe(server: ExampleServer, v5: bool) -> None:
    subscriber = Paho(server.port, "sub", v5=v5).connect()
    publisher = Paho(server.port, "pub", v5=v5).connect()
    try:
        subscriber.subscribe("sensors/#", 2)
        for qos in (0, 1, 2):
            publisher.publish(f"sensors/{qos}", f"at {qos}".encode(), qos=qos)
        received = [subscriber.receive() for _ in range(3)]
        assert [(m.topic, m.payload, m.qos) for m in received] == [
            (f"sensors/{qos}", f"at {qos}".encode(), qos) for qos in (0, 1, 2)
        ]
        # Granted QoS 1: a QoS 2 message comes at QoS 1.
        subscriber.subscribe("alarms/#", 1)
        publisher.publish("alarms/fire", b"!", qos=2)
        assert subscriber.receive().qos == 1
        result, _ = subscriber.client.unsubscribe(["sensors/#", "alarms/#"])
        assert result == 0
        time.sleep(0.3)
        publisher.publish("sensors/late", b"unheard", qos=1)
        assert subscriber.nothing_more()
    finally:
        publisher.disconnect()
        subscriber.disconnect()
    logged = server.log.read_text(encoding="utf-8").splitlines()
    assert logged[:3] == [f"sensors/{qos} b'at {qos}'" for qos in (0, 1, 2)]
    assert "sensors/late b'unheard'" in logged


@pytest.mark.parametrize("v5", VERSIONS)
def test_a_refused_client_hears_why(server: ExampleServer, v5: bool) -> None:
    paho = import_paho()
    refused = Paho(server.port, "bad-client", v5=v5)
    refused.client.connect(HOST, server.port)
    refused.client.loop_start()
    try:
        assert refused.connected.wait(WAIT)
        # 0x85 Client Identifier not valid; MQTT 3.1.1 return code 2.
        assert refused.connect_result == paho.ReasonCode(
            paho.PacketTypes.CONNACK, identifier=ReasonCode.CLIENT_IDENTIFIER_NOT_VALID
        ) or refused.connect_result.value == 2
    finally:
        refused.client.loop_stop()


def test_qos2_both_ways_on_the_wire(server: ExampleServer) -> None:
    subscriber = RawClient(server.port, V5)
    assert subscriber.connect("raw-sub").reason_code == 0
    subscriber.send(SubscribePacket(1, [Subscription("q2/#", QoS.EXACTLY_ONCE)]))
    assert subscriber.expect(SubAckPacket).reason_codes == (ReasonCode.GRANTED_QOS_2,)
    publisher = RawClient(server.port, V5)
    publisher.connect("raw-pub")
    publisher.send(PublishPacket("q2/x", b"once", QoS.EXACTLY_ONCE, packet_id=7))
    assert publisher.expect(PubRecPacket).packet_id == 7
    publisher.send(PubRelPacket(7))
    message = subscriber.expect(PublishPacket)
    assert (message.payload, message.qos) == (b"once", QoS.EXACTLY_ONCE)
    assert message.packet_id is not None
    subscriber.send(PubRecPacket(message.packet_id))
    assert subscriber.expect(PubRelPacket).packet_id == message.packet_id
    for client in (subscriber, publisher):
        client.close()


def test_receive_maximum_is_enforced_on_the_wire(server: ExampleServer) -> None:
    client = RawClient(server.port, V5)
    connack = client.connect("flood")
    assert connack.receive_maximum == 1024
    # QoS 2 messages whose PUBREL never comes stay unacknowledged: one more
    # than the Receive Maximum ends the connection with 0x93 [MQTT-3.3.4-9].
    for packet_id in range(1, 1026):
        client.send(PublishPacket("rm/x", b".", QoS.EXACTLY_ONCE, packet_id=packet_id))
    goodbye = None
    for _ in range(1026):
        packet = client.next()
        if not isinstance(packet, PubRecPacket):
            goodbye = packet
            break
    assert isinstance(goodbye, DisconnectPacket)
    assert goodbye.reason_code == ReasonCode.RECEIVE_MAXIMUM_EXCEEDED
    assert client.next() is None
    client.close()


def test_a_silent_client_is_closed_after_one_and_a_half_keep_alives(server: ExampleServer) -> None:
    client = RawClient(server.port, V5)
    client.connect("quiet", keep_alive=1)
    started = time.monotonic()
    goodbye = client.next(timeout=5)
    assert isinstance(goodbye, DisconnectPacket)
    assert goodbye.reason_code == ReasonCode.KEEP_ALIVE_TIMEOUT  # [MQTT-3.1.2-22]
    assert 1.4 <= time.monotonic() - started < 4
    assert client.next() is None
    client.close()


@pytest.mark.parametrize("version", [ProtocolVersion.MQTT_3_1_1, V5])
def test_malformed_input_closes_only_that_client(server: ExampleServer, version: ProtocolVersion) -> None:
    bystander = Paho(server.port, "bystander", v5=True).connect()
    client = RawClient(server.port, version)
    assert isinstance(client.connect("broken"), ConnAckPacket)
    client.sock.sendall(b"\x30\x03\x00\x05a")  # a topic longer than the packet
    goodbye = client.next()
    if version == V5:
        assert isinstance(goodbye, DisconnectPacket)
        assert goodbye.reason_code == ReasonCode.MALFORMED_PACKET
        goodbye = client.next()
    assert goodbye is None
    client.close()
    bystander.subscribe("still/#", 1)
    other = Paho(server.port, "other", v5=False).connect()
    other.publish("still/here", b"yes", qos=1)
    assert bystander.receive().payload == b"yes"
    other.disconnect()
    bystander.disconnect()


def test_a_reset_connection_ends_like_an_eof(server: ExampleServer) -> None:
    """A client that resets its connection (SO_LINGER 0) mid-session is gone
    like one that closed: no traceback, the others still served."""
    subscriber = Paho(server.port, "stays", v5=True).connect()
    subscriber.subscribe("reset/#", 1)
    for _ in range(3):
        client = RawClient(server.port, V5)
        assert isinstance(client.connect("resets"), ConnAckPacket)
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.sock.sendall(b"\x30")  # half a packet, then the reset
        client.sock.close()
    publisher = Paho(server.port, "after", v5=False).connect()
    publisher.publish("reset/done", b"yes", qos=1)
    assert subscriber.receive().payload == b"yes"
    publisher.disconnect()
    subscriber.disconnect()
