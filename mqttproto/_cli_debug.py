"""``-d``: the packets a client sends and receives, one line each, in
libmosquitto's words (``Client ID sending CONNECT``, ``Client ID received
PUBLISH (d0, q1, r0, m1, 'topic', ... (5 bytes))``), on standard output as
mosquitto_pub/sub/rr print them.

The client adapter has no packet hook, so the trace taps its sans-IO
connection: what ``data_to_send()`` hands to the transport and what
``receive_data()`` is fed are split into packets by a second
:class:`~mqttproto.codec.PacketReader` of their own. Those are the MQTT bytes
on every transport (below the WebSocket framing, above TLS). A packet the
trace cannot decode is not printed; the client itself is never disturbed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, BinaryIO

from .codec import PacketReader
from .enums import ProtocolVersion
from .errors import MQTTError
from .packets import (
    ConnAckPacket,
    DisconnectPacket,
    Packet,
    PublishPacket,
    SubAckPacket,
    SubscribePacket,
    UnsubscribePacket,
)

__all__ = ["PacketTrace"]


class PacketTrace:
    """Print every packet of ``client`` (an asyncio ``Client``) to ``out``.

    :param announce_subacks: also print mosquitto_sub's ``Subscribed (mid:
        N): CODES`` after each SUBACK.
    """

    def __init__(self, client: Any, out: BinaryIO, *, announce_subacks: bool = False) -> None:
        self._client = client
        self._out = out
        self._version: ProtocolVersion = client.core.version
        self._announce_subacks = announce_subacks
        self._broken = False
        self._sent = PacketReader(version=None)
        self._received = PacketReader(version=self._version)
        #: libmosquitto numbers QoS 0 messages too; its counter, imitated.
        self._last_mid = 0
        self._aliases: dict[int, str] = {}
        core = client.core
        conn = core.conn
        # Instance attributes shadow the methods: the tap sees every call.
        setattr(core, "begin", self._wrap_begin(core.begin))  # noqa: B010
        setattr(conn, "data_to_send", self._wrap_send(conn.data_to_send))  # noqa: B010
        setattr(conn, "receive_data", self._wrap_receive(conn.receive_data))  # noqa: B010

    # -- the taps ------------------------------------------------------------------

    def _wrap_begin(self, begin: Callable[[], None]) -> Callable[[], None]:
        def traced() -> None:
            # A new network connection: both streams start afresh.
            self._sent = PacketReader(version=None)
            self._received = PacketReader(version=self._version)
            self._aliases.clear()
            begin()

        return traced

    def _wrap_send(self, data_to_send: Callable[[float], bytes]) -> Callable[[float], bytes]:
        def traced(now: float) -> bytes:
            data = data_to_send(now)
            if data:
                for packet in self._packets(self._sent, data):
                    self._print_sent(packet)
            return data

        return traced

    def _wrap_receive(
        self, receive_data: Callable[[bytes, float], None]
    ) -> Callable[[bytes, float], None]:
        def traced(data: bytes, now: float) -> None:
            for packet in self._packets(self._received, data):
                self._print_received(packet)
            receive_data(data, now)

        return traced

    @staticmethod
    def _packets(reader: PacketReader, data: bytes) -> list[Packet]:
        # A broken stream is the connection's to report, not the trace's.
        with contextlib.suppress(MQTTError, ValueError):
            return list(reader.feed(data))
        return []

    # -- the lines ---------------------------------------------------------------------

    def _line(self, text: str) -> None:
        if self._broken:
            return
        try:
            self._out.write(text.encode("utf-8", "replace") + b"\n")
            self._out.flush()
        except OSError:
            # Standard output went away: the command's own output finds out
            # and ends it; the trace must not break the connection first.
            self._broken = True

    @property
    def _client_id(self) -> str:
        return self._client.client_id or "(null)"

    def _publish_line(self, verb: str, packet: PublishPacket, mid: int) -> str:
        topic = packet.topic
        if packet.topic_alias is not None:
            if topic:
                self._aliases[packet.topic_alias] = topic
            else:
                topic = self._aliases.get(packet.topic_alias, "")
        return (
            f"Client {self._client_id} {verb} PUBLISH (d{int(packet.duplicate)}, "
            f"q{int(packet.qos)}, r{int(packet.retain)}, m{mid}, '{topic}', ... "
            f"({len(packet.payload)} bytes))"
        )

    def _print_sent(self, packet: Packet) -> None:
        who = f"Client {self._client_id} sending"
        name = packet.packet_type.name
        if isinstance(packet, PublishPacket):
            if packet.packet_id is not None:
                mid = packet.packet_id
                if not packet.duplicate:
                    self._last_mid = mid
            else:
                self._last_mid = mid = self._last_mid % 65535 + 1
            self._line(self._publish_line("sending", packet, mid))
        elif isinstance(packet, SubscribePacket):
            self._last_mid = packet.packet_id
            for sub in packet.subscriptions:
                options = (
                    (0x04 if sub.no_local else 0)
                    | (0x08 if sub.retain_as_published else 0)
                    | (int(sub.retain_handling) << 4)
                )
                self._line(
                    f"{who} SUBSCRIBE (Mid: {packet.packet_id}, Topic: {sub.topic_filter}, "
                    f"QoS: {int(sub.max_qos)}, Options: 0x{options:02x})"
                )
        elif isinstance(packet, UnsubscribePacket):
            self._last_mid = packet.packet_id
            for topic_filter in packet.topic_filters:
                self._line(f"{who} UNSUBSCRIBE (Mid: {packet.packet_id}, Topic: {topic_filter})")
        elif name in ("PUBACK", "PUBREC"):
            code = int(getattr(packet, "reason_code", 0))
            self._line(f"{who} {name} (m{getattr(packet, 'packet_id', 0)}, rc{code})")
        elif name in ("PUBREL", "PUBCOMP"):
            self._line(f"{who} {name} (m{getattr(packet, 'packet_id', 0)})")
        else:
            self._line(f"{who} {name}")

    def _print_received(self, packet: Packet) -> None:
        who = f"Client {self._client_id} received"
        name = packet.packet_type.name
        if isinstance(packet, ConnAckPacket):
            code = int(packet.reason_code)
            if self._version != ProtocolVersion.MQTT_5_0:
                code = packet.reason_code.to_connack_return_code()
            self._line(f"{who} CONNACK ({code})")
        elif isinstance(packet, PublishPacket):
            self._line(self._publish_line("received", packet, packet.packet_id or 0))
        elif isinstance(packet, SubAckPacket):
            self._line(f"{who} SUBACK")
            if self._announce_subacks:
                codes = ", ".join(str(int(code)) for code in packet.reason_codes)
                self._line(f"Subscribed (mid: {packet.packet_id}): {codes}")
        elif name in ("PUBACK", "PUBCOMP"):
            code = int(getattr(packet, "reason_code", 0))
            self._line(f"{who} {name} (Mid: {getattr(packet, 'packet_id', 0)}, RC:{code})")
        elif name in ("PUBREC", "PUBREL"):
            self._line(f"{who} {name} (Mid: {getattr(packet, 'packet_id', 0)})")
        elif isinstance(packet, DisconnectPacket):
            # libmosquitto's only line without the client id.
            self._line(f"Received DISCONNECT ({int(packet.reason_code)})")
        else:
            self._line(f"{who} {name}")
