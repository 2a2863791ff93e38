"""A scripted server for client tests: raw packets in and out, and a fake clock.

``Server(version)`` decodes what the client sent and encodes what the test
makes the server say, so tests assert on packets and on exact bytes.
"""

from __future__ import annotations

from typing import Any

from mqttproto import PacketReader, ProtocolVersion, encode_packet
from mqttproto.client import ClientConnection
from mqttproto.events import Event
from mqttproto.packets import ConnAckPacket, Packet


class Clock:
    """A fake monotonic clock that only moves when told."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


class Server:
    """The server end of a wire to a :class:`ClientConnection`."""

    def __init__(self, client: ClientConnection, clock: Clock | None = None) -> None:
        self.client = client
        self.version = client.version
        self.clock = clock or Clock()
        self.reader = PacketReader(version=self.version)

    def wire(self) -> bytes:
        """Everything the client has queued, as bytes."""
        return self.client.data_to_send(self.clock.now)

    def received(self) -> list[Packet]:
        """Packets the client has queued, decoded."""
        return self.reader.feed(self.wire())

    def send(self, *packets: Packet) -> None:
        data = b"".join(encode_packet(p, version=self.version) for p in packets)
        self.client.receive_data(data, self.clock.now)

    def send_bytes(self, data: bytes) -> None:
        self.client.receive_data(data, self.clock.now)

    def events(self) -> list[Event]:
        return list(self.client.events())

    def reset_reader(self) -> None:
        """A new network connection: the stream starts over."""
        self.reader = PacketReader(version=self.version)


def connected(
    version: ProtocolVersion = ProtocolVersion.MQTT_5_0,
    *,
    connect: dict[str, Any] | None = None,
    connack: dict[str, Any] | None = None,
    **client_kwargs: Any,
) -> Server:
    """A client that has connected and been accepted; CONNECT and the events drained."""
    client = ClientConnection(version, **client_kwargs)
    server = Server(client)
    client.connect(**(connect or {"client_id": "c"}))
    server.received()
    server.send(ConnAckPacket(**(connack or {})))
    server.events()
    return server
