"""Property tests of the client: the transition table and delivery guarantees.

- Every sequence of API calls, timer ticks and packets from the server leaves
  the client in a valid state: a refused call raises LocalProtocolError and
  changes nothing; a refused packet raises RemoteProtocolError and closes.
- Against a model server, with connections cut at random points (bytes lost
  in flight both ways), QoS 1 messages arrive at least once and QoS 2
  messages exactly once, in both directions, across session resumes.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from mqttproto import (
    LocalProtocolError,
    PacketReader,
    ProtocolVersion,
    QoS,
    RemoteProtocolError,
    encode_packet,
)
from mqttproto._state import ConnectionState
from mqttproto.client import ClientConnection
from mqttproto.config import ClientConfig
from mqttproto.enums import ReasonCode
from mqttproto.events import MessageReceived, PublishAcknowledged, PublishDiscarded
from mqttproto.packets import (
    AuthPacket,
    ConnAckPacket,
    ConnectPacket,
    DisconnectPacket,
    Packet,
    PingRespPacket,
    PubAckPacket,
    PubCompPacket,
    PublishPacket,
    PubRecPacket,
    PubRelPacket,
    SubAckPacket,
    UnsubAckPacket,
)

V5 = ProtocolVersion.MQTT_5_0
V311 = ProtocolVersion.MQTT_3_1_1

# ---------------------------------------------------------------------------
# The transition sweep

_SERVER_PACKETS: list[Packet] = [
    ConnAckPacket(),
    ConnAckPacket(False, ReasonCode.NOT_AUTHORIZED),
    ConnAckPacket(False, receive_maximum=1, topic_alias_maximum=2),
    PublishPacket("t", b"0"),
    PublishPacket("t", b"1", QoS.AT_LEAST_ONCE, packet_id=1),
    PublishPacket("t", b"2", QoS.EXACTLY_ONCE, packet_id=2),
    PubAckPacket(1),
    PubRecPacket(1),
    PubRelPacket(2),
    PubCompPacket(1),
    SubAckPacket(1, (ReasonCode.GRANTED_QOS_0,)),
    UnsubAckPacket(1, (ReasonCode.SUCCESS,)),
    PingRespPacket(),
    DisconnectPacket(),
    AuthPacket(ReasonCode.CONTINUE_AUTHENTICATION, authentication_method="M"),
    AuthPacket(ReasonCode.SUCCESS, authentication_method="M"),
]

_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("connect", {"client_id": "c", "clean_start": False, "session_expiry_interval": 60}),
    ("connect", {"client_id": "c", "authentication_method": "M"}),
    ("publish", {"topic": "t", "payload": b"", "qos": 0}),
    ("publish", {"topic": "t", "payload": b"", "qos": 1}),
    ("publish", {"topic": "t", "payload": b"", "qos": 2}),
    ("publish", {"topic": "t/#", "payload": b"", "qos": 1}),
    ("subscribe", {"subscriptions": ["a/+"]}),
    ("unsubscribe", {"filters": ["a/+"]}),
    ("disconnect", {}),
    ("auth", {"authentication_data": b"x"}),
    ("acknowledge", {"packet_id": 1}),
]


def _snapshot(client: ClientConnection) -> tuple[Any, ...]:
    return (
        client.state,
        client.inflight,
        client.queued,
        len(client._packet_ids),
        dict(client._pending_subscribes),
        dict(client._inbound.unacked),
        set(client._inbound.awaiting_release),
        list(client._out),
    )


_STEP = st.one_of(
    st.tuples(st.just("call"), st.sampled_from(_CALLS)),
    st.tuples(st.just("packet"), st.sampled_from(_SERVER_PACKETS)),
    st.tuples(st.just("timer"), st.floats(0, 200)),
    st.tuples(st.just("eof"), st.none()),
)


@given(
    version=st.sampled_from([V311, V5]),
    manual=st.booleans(),
    steps=st.lists(_STEP, max_size=40),
)
@settings(max_examples=300)
def test_every_state_and_input_is_handled(
    version: ProtocolVersion, manual: bool, steps: list[tuple[str, Any]]
) -> None:
    client = ClientConnection(version, config=ClientConfig(auto_acknowledge=not manual))
    now = 0.0
    for kind, arg in steps:
        now += 1.0
        before = _snapshot(client)
        if kind == "call":
            name, kwargs = arg
            try:
                getattr(client, name)(**kwargs)
            except LocalProtocolError:
                # A refused call changes nothing [DESIGN: validate before mutate].
                assert _snapshot(client) == before
        elif kind == "packet":
            try:
                data = encode_packet(arg, version=version)
            except LocalProtocolError:
                continue  # e.g. AUTH in 3.1.1 cannot even be encoded
            try:
                client.receive_data(data, now)
            except LocalProtocolError:
                assert before[0] is ConnectionState.IDLE
            except RemoteProtocolError:
                assert client.state is ConnectionState.CLOSED
        elif kind == "timer":
            client.handle_timer(now + arg)
        else:
            client.receive_eof(now)
        assert client.state in ConnectionState
        client.data_to_send(now)
        list(client.events())
        timer = client.get_timer()
        assert timer is None or timer >= 0
        if client.state is not ConnectionState.CONNECTED:
            assert not client._pending_subscribes
        assert client.inflight <= 65535


# ---------------------------------------------------------------------------
# Delivery guarantees against a model server


@attrs.define
class _Outgoing:
    packet: PublishPacket
    released: bool = False


class ModelServer:
    """A minimal, correct MQTT server holding one persistent session."""

    def __init__(self, version: ProtocolVersion) -> None:
        self.version = version
        self.received: list[bytes] = []  # payloads, once per delivery
        self.qos2_held: set[int] = set()  # inbound QoS 2 ids between PUBREC and PUBREL
        self.outgoing: OrderedDict[int, _Outgoing] = OrderedDict()
        self.next_id = 1
        self.reader = PacketReader(version=None)
        self.connected = False

    def new_connection(self) -> None:
        self.reader = PacketReader(version=None)
        self.connected = False

    def _encode(self, *packets: Packet) -> bytes:
        return b"".join(encode_packet(p, version=self.version) for p in packets)

    def feed(self, data: bytes) -> bytes:
        replies: list[Packet] = []
        for packet in self.reader.feed(data):
            if isinstance(packet, ConnectPacket):
                present = not packet.clean_start
                if packet.clean_start:
                    self.qos2_held.clear()
                    self.outgoing.clear()
                replies.append(ConnAckPacket(present))
                self.connected = True
                for item in self.outgoing.values():
                    if item.released:
                        replies.append(PubRelPacket(item.packet.packet_id or 0))
                    else:
                        replies.append(attrs.evolve(item.packet, duplicate=True))
            elif isinstance(packet, PublishPacket):
                if packet.qos == QoS.AT_MOST_ONCE:
                    self.received.append(packet.payload)
                elif packet.qos == QoS.AT_LEAST_ONCE:
                    self.received.append(packet.payload)
                    replies.append(PubAckPacket(packet.packet_id or 0))
                else:
                    if packet.packet_id not in self.qos2_held:
                        self.received.append(packet.payload)
                        self.qos2_held.add(packet.packet_id or 0)
                    replies.append(PubRecPacket(packet.packet_id or 0))
            elif isinstance(packet, PubRelPacket):
                self.qos2_held.discard(packet.packet_id)
                replies.append(PubCompPacket(packet.packet_id))
            elif isinstance(packet, PubAckPacket):
                self.outgoing.pop(packet.packet_id, None)
            elif isinstance(packet, PubRecPacket):
                if packet.packet_id in self.outgoing:
                    self.outgoing[packet.packet_id].released = True
                replies.append(PubRelPacket(packet.packet_id))
            elif isinstance(packet, PubCompPacket):
                self.outgoing.pop(packet.packet_id, None)
            elif isinstance(packet, DisconnectPacket):
                self.connected = False
        return self._encode(*replies)

    def publish(self, payload: bytes, qos: QoS) -> bytes:
        if qos == QoS.AT_MOST_ONCE:
            return self._encode(PublishPacket("t", payload))
        packet_id = self.next_id
        self.next_id = self.next_id % 65535 + 1
        packet = PublishPacket("t", payload, qos, packet_id=packet_id)
        self.outgoing[packet_id] = _Outgoing(packet)
        return self._encode(packet)


class _DeliveryMachine(RuleBasedStateMachine):
    version: ProtocolVersion = V5

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.counter = 0
        self.server = ModelServer(self.version)
        self.client = ClientConnection(self.version)
        self.to_server = b""  # bytes in flight on the current connection
        self.to_client = b""
        self.sent: dict[bytes, QoS] = {}  # client -> server
        self.pushed: dict[bytes, QoS] = {}  # server -> client
        self.delivered: list[bytes] = []  # what the client application saw
        self.acknowledged: set[int] = set()

    def _connect_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {"client_id": "c", "clean_start": False, "keep_alive": 0}
        if self.version == V5:
            args["session_expiry_interval"] = 3600
        return args

    @initialize()
    def first_connect(self) -> None:
        # The very first connection starts clean so that the server's
        # session and the client's agree from the start.
        args = self._connect_args()
        args["clean_start"] = True
        self.client.connect(**args)
        self._pump()

    def _drain_events(self) -> None:
        for event in self.client.events():
            if isinstance(event, MessageReceived):
                self.delivered.append(event.payload)
            elif isinstance(event, PublishAcknowledged):
                self.acknowledged.add(event.packet_id)
            assert not isinstance(event, PublishDiscarded)

    def _pump(self, budget: int = 50) -> None:
        """Exchange bytes until both sides are quiet (bounded)."""
        for _ in range(budget):
            self.to_server += self.client.data_to_send(self.now)
            if not self.to_server and not self.to_client:
                break
            data, self.to_server = self.to_server, b""
            if data:
                self.to_client += self.server.feed(data)
            data, self.to_client = self.to_client, b""
            if data and not self.client.closed:
                self.client.receive_data(data, self.now)
            self._drain_events()
        self._drain_events()

    @rule(qos=st.sampled_from(list(QoS)))
    def client_publishes(self, qos: QoS) -> None:
        self.counter += 1
        payload = b"c%d" % self.counter
        state = self.client.state
        if state is not ConnectionState.CONNECTED and not (
            qos and (state is ConnectionState.CONNECTING or self.client._session_may_persist)
        ):
            # Offline, only QoS 1/2 may queue, and only in a session that
            # outlives the connection (not after a 3.1.1 clean session).
            with pytest.raises(LocalProtocolError):
                self.client.publish("t", payload, qos=qos)
            return
        self.client.publish("t", payload, qos=qos)
        self.sent[payload] = qos

    @precondition(
        lambda self: self.client.state is ConnectionState.CONNECTED and self.server.connected
    )
    @rule(qos=st.sampled_from(list(QoS)))
    def server_publishes(self, qos: QoS) -> None:
        self.counter += 1
        payload = b"s%d" % self.counter
        self.to_client += self.server.publish(payload, qos)
        self.pushed[payload] = qos

    @rule(rounds=st.integers(1, 3))
    def exchange(self, rounds: int) -> None:
        self._pump(budget=rounds)

    @precondition(lambda self: self.client.state is ConnectionState.CONNECTED)
    @rule(keep_to_server=st.integers(0, 200), keep_to_client=st.integers(0, 200))
    def cut(self, keep_to_server: int, keep_to_client: int) -> None:
        """The connection drops with only part of the bytes in flight delivered."""
        self.to_server += self.client.data_to_send(self.now)
        partial = self.to_server[:keep_to_server]
        self.to_client += self.server.feed(partial) if partial else b""
        partial = self.to_client[:keep_to_client]
        if partial:
            # A cut can land mid-packet: the rest is lost with the connection.
            self.client.receive_data(partial, self.now)
            self._drain_events()
        self.client.receive_eof(self.now)
        # Whatever either side still had to say is lost with the connection.
        self.client.data_to_send(self.now)
        self.to_server = self.to_client = b""
        self.server.new_connection()
        self._drain_events()

    @precondition(lambda self: self.client.state is ConnectionState.CLOSED)
    @rule()
    def reconnect(self) -> None:
        self.now += 1
        self.client.connect(**self._connect_args())
        self._pump()

    @invariant()
    def qos2_never_duplicated(self) -> None:
        for payload in self.server.received:
            if self.sent.get(payload) == QoS.EXACTLY_ONCE:
                assert self.server.received.count(payload) == 1
        for payload in self.delivered:
            if self.pushed.get(payload) != QoS.AT_LEAST_ONCE:
                assert self.delivered.count(payload) == 1

    def teardown(self) -> None:
        # Heal the network: reconnect and let everything settle.
        if self.client.state is not ConnectionState.CONNECTED:
            if self.client.state is ConnectionState.CONNECTING:
                self._pump()
            if self.client.state is ConnectionState.CLOSED:
                self.reconnect()
        self._pump(budget=200)
        for payload, qos in self.sent.items():
            count = self.server.received.count(payload)
            if qos == QoS.AT_MOST_ONCE:
                assert count <= 1
            elif qos == QoS.AT_LEAST_ONCE:
                assert count >= 1, payload
            else:
                assert count == 1, payload
        for payload, qos in self.pushed.items():
            count = self.delivered.count(payload)
            if qos == QoS.AT_MOST_ONCE:
                assert count <= 1
            elif qos == QoS.AT_LEAST_ONCE:
                assert count >= 1, payload
            else:
                assert count == 1, payload
        assert self.client.inflight == 0
        assert self.client.queued == 0


class DeliveryV5(_DeliveryMachine):
    version = V5


class DeliveryV311(_DeliveryMachine):
    version = V311


TestDeliveryV5 = DeliveryV5.TestCase
TestDeliveryV311 = DeliveryV311.TestCase
TestDeliveryV5.settings = settings(max_examples=150, stateful_step_count=40)
TestDeliveryV311.settings = settings(max_examples=100, stateful_step_count=40)
