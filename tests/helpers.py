"""Test helpers: a fake clock, clients wired to a Broker, raw packet bytes.

:class:`BrokerHarness` connects :class:`~mqttproto.ClientConnection` objects
to a :class:`~mqttproto.broker.Broker` through byte pipes and pumps both ways
until nothing moves (bounded, so a livelock fails the test instead of
hanging it). Every event each client sees is collected. Raw connections
(:meth:`BrokerHarness.open_raw`) let a test write any bytes and read exactly
what the broker answers.
"""

from __future__ import annotations

from typing import Any

from mqttproto import ProtocolVersion, encode_packet
from mqttproto.broker import Broker
from mqttproto.client import ClientConnection
from mqttproto.config import BrokerConfig, ClientConfig
from mqttproto.errors import RemoteProtocolError
from mqttproto.events import ConnectionAccepted, Event, MessageReceived
from mqttproto.packets import ConnectPacket, Packet

V31 = ProtocolVersion.MQTT_3_1
V311 = ProtocolVersion.MQTT_3_1_1
V5 = ProtocolVersion.MQTT_5_0


class Client:
    """One client of the harness: its connection object, broker conn id and events."""

    def __init__(self, harness: BrokerHarness, name: str, conn: ClientConnection) -> None:
        self.harness = harness
        self.name = name
        self.conn = conn
        self.conn_id: int | None = None
        self.events: list[Event] = []
        self.closed = False
        self.errors: list[RemoteProtocolError] = []

    def messages(self) -> list[MessageReceived]:
        found = [e for e in self.events if isinstance(e, MessageReceived)]
        return found

    def take(self) -> list[Event]:
        events, self.events = self.events, []
        return events

    def take_messages(self) -> list[MessageReceived]:
        messages = self.messages()
        self.events = [e for e in self.events if not isinstance(e, MessageReceived)]
        return messages

    def connect(self, *, identity: str | None = None, **kwargs: Any) -> list[Event]:
        """Open a network connection, send CONNECT, pump; return the events.

        ``identity``: the username the transport established (a client
        certificate's CN), passed to ``Broker.open_connection(username=...)``.
        """
        kwargs.setdefault("client_id", self.name)
        self.conn_id = self.harness.broker.open_connection(
            self.harness.now, peer=self.name, username=identity
        )
        self.closed = False
        self.conn.connect(**kwargs)
        self.harness.pump()
        # Messages delivered right after CONNACK stay for take_messages().
        events = [e for e in self.events if not isinstance(e, MessageReceived)]
        self.events = [e for e in self.events if isinstance(e, MessageReceived)]
        return events

    def drop(self) -> None:
        """The network goes away under the client (no DISCONNECT)."""
        assert self.conn_id is not None
        self.harness.broker.connection_lost(self.conn_id, self.harness.now)
        if not self.conn.closed:
            self.conn.receive_eof(self.harness.now)
        self.closed = True
        self.conn_id = None
        self.harness.pump()


class BrokerHarness:
    """A broker, its clients and a fake clock."""

    def __init__(self, config: BrokerConfig | None = None, **broker_kwargs: Any) -> None:
        self.now = 1000.0
        self.broker = Broker(config, **broker_kwargs)
        self.clients: dict[str, Client] = {}
        self.raw: dict[int, bytearray] = {}
        self.raw_closed: set[int] = set()

    def client(
        self, name: str, version: ProtocolVersion = V5, config: ClientConfig | None = None
    ) -> Client:
        client = Client(self, name, ClientConnection(version, config=config))
        self.clients[name] = client
        return client

    def connected(self, name: str, version: ProtocolVersion = V5, **kwargs: Any) -> Client:
        client = self.client(name, version)
        events = client.connect(**kwargs)
        assert any(isinstance(e, ConnectionAccepted) for e in events), events
        return client

    def open_raw(self) -> int:
        conn_id = self.broker.open_connection(self.now, peer="raw")
        self.raw[conn_id] = bytearray()
        return conn_id

    def send_raw(self, conn_id: int, data: bytes) -> bytes:
        """Feed raw bytes, pump, return what the broker wrote to that connection."""
        self.broker.receive_data(conn_id, data, self.now)
        self.pump()
        out = bytes(self.raw[conn_id])
        self.raw[conn_id].clear()
        return out

    def advance(self, seconds: float) -> None:
        """Move the clock, running every timer of the broker and the clients on the way."""
        end = self.now + seconds
        for _ in range(100_000):
            deadlines = [self.broker.get_timer()]
            deadlines += [c.conn.get_timer() for c in self.clients.values() if not c.closed]
            due = [d for d in deadlines if d is not None and d <= end]
            if not due:
                break
            self.now = max(self.now, min(due))
            self.broker.handle_timer(self.now)
            for client in self.clients.values():
                if not client.closed:
                    client.conn.handle_timer(self.now)
            self.pump()
        self.now = end
        self.broker.handle_timer(self.now)
        self.pump()

    def pump(self, limit: int = 1000) -> None:
        """Move bytes both ways until nothing moves."""
        broker = self.broker
        by_conn = {c.conn_id: c for c in self.clients.values() if c.conn_id is not None}
        for _ in range(limit):
            moved = False
            for client in list(by_conn.values()):
                data = client.conn.data_to_send(self.now)
                if data and not client.closed:
                    moved = True
                    assert client.conn_id is not None
                    broker.receive_data(client.conn_id, data, self.now)
                client.events.extend(client.conn.events())
                if client.conn.closed and not client.closed and client.conn_id is not None:
                    # The client hung up (after DISCONNECT, or an error).
                    broker.connection_lost(client.conn_id, self.now)
                    client.closed = True
            for conn_id, data in broker.flush(self.now):
                moved = True
                if conn_id in self.raw:
                    self.raw[conn_id] += data
                    continue
                client = by_conn.get(conn_id)
                if client is None or client.closed:
                    continue
                try:
                    client.conn.receive_data(data, self.now)
                except RemoteProtocolError as exc:
                    client.errors.append(exc)
                client.events.extend(client.conn.events())
            for conn_id in broker.connections_to_close():
                moved = True
                for cid, data in broker.flush(self.now):
                    if cid in self.raw:
                        self.raw[cid] += data
                    elif cid in by_conn and not by_conn[cid].closed:
                        by_conn[cid].conn.receive_data(data, self.now)
                broker.connection_lost(conn_id, self.now)
                if conn_id in self.raw:
                    self.raw_closed.add(conn_id)
                client = by_conn.get(conn_id)
                if client is not None and not client.closed:
                    client.conn.receive_eof(self.now)
                    client.events.extend(client.conn.events())
                    client.closed = True
                    client.conn_id = None
            if not moved:
                return
        raise AssertionError("pump did not settle")


class PacketFactory:
    """Raw packet bytes, valid or deliberately broken."""

    @staticmethod
    def encode(packet: Packet, version: ProtocolVersion = V5) -> bytes:
        return encode_packet(packet, version=version)

    @staticmethod
    def connect(client_id: str = "raw", version: ProtocolVersion = V5, **kwargs: Any) -> bytes:
        return encode_packet(
            ConnectPacket(client_id, protocol_version=version, **kwargs), version=version
        )

    @staticmethod
    def connect_level(level: int) -> bytes:
        """A CONNECT with an arbitrary protocol level byte."""
        body = b"\x00\x04MQTT" + bytes((level,)) + b"\x02\x00\x3c" + b"\x00\x01x"
        return bytes((0x10, len(body))) + body

    @staticmethod
    def publish_v5_raw(topic: bytes, payload: bytes = b"", flags: int = 0) -> bytes:
        body = len(topic).to_bytes(2, "big") + topic + b"\x00" + payload
        return bytes((0x30 | flags, len(body))) + body
