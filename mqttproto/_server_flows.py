"""Application-message flows of the server role: QoS 0/1/2 in both directions.

A mixin of :class:`~mqttproto.server.ServerConnection`, as
:mod:`._client_flows` is of the client: received PUBLISH (checked against
what the server announced, reported, acknowledged by the application),
PUBREL answered by the role, and PUBLISH sent to the client within its
Receive Maximum, with the acks that come back. The part of this state
that outlives a network connection is a :class:`~._server_session.ServerSession`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import attrs

from ._codec_common import PLAIN_PUBLISH as _PLAIN_PUBLISH
from ._qos import MAX_PACKET_ID, NO_PACKET_IDS, OutboundMessage, OutboundStage
from ._server_aliases import ServerAliases
from ._server_session import ServerSession
from ._state import ConnectionState
from .codec import PreparedPublish, encode_ack, packet_id_bytes
from .config import ServerConfig
from .enums import PacketType, ProtocolVersion, QoS, ReasonCode
from .errors import LocalProtocolError, ReceiveMaximumExceeded, RemoteProtocolError
from .events import (
    Event,
    MessageReceived,
    PublishAcknowledged,
    PublishDiscarded,
    message_received,
    publish_acknowledged,
)
from .packets import (
    Packet,
    PubAckPacket,
    PubCompPacket,
    PublishPacket,
    PubRecPacket,
    PubRelPacket,
)

__all__ = ["ServerFlows"]

_P = PacketType
_C = ReasonCode
_V5 = ProtocolVersion.MQTT_5_0
_CONNECTED = ConnectionState.CONNECTED
_CLOSED = ConnectionState.CLOSED
_SUCCESS = ReasonCode.SUCCESS
_PUBACK = PacketType.PUBACK
_PUBREC = PacketType.PUBREC
#: Every acknowledgement without a reason code or properties is the same in
#: each version: the codec's 3.1.1 form.
_V311 = ProtocolVersion.MQTT_3_1_1
_QOS: dict[int, QoS] = {int(q): q for q in QoS}
_AT_LEAST_ONCE = QoS.AT_LEAST_ONCE
_PLAIN_QOS = _PLAIN_PUBLISH + 2
# MessageReceived built without a call frame (see events.message_received).
_new_event = object.__new__
_set_packet = MessageReceived.__dict__["packet"].__set__
# OutboundMessage built without a class call (see publish_prepared).
_new_outbound = object.__new__
_PUBLISHED = OutboundStage.PUBLISHED


class ServerFlows(ServerAliases):
    """The QoS flows half of :class:`~mqttproto.server.ServerConnection`."""

    if not TYPE_CHECKING:
        # ServerConnection declares the slots; a mixin without __slots__
        # would give every connection a __dict__ and a weakref slot (40
        # bytes). Hidden from mypy, which would take the mixin's writes to
        # those slots for writes to names outside its own empty __slots__.
        __slots__ = ()

    config: ServerConfig
    _version: ProtocolVersion | None
    _output: list[bytes] | None
    bytes_to_send: int
    _event_queue: list[Event] | None
    #: Set by accept(); the flows run only once connected.
    _session: ServerSession
    _peer_max_packet_size: int | None
    _v5: bool
    _max_out: int
    _aliasing: bool
    _alias_limit: int
    _plain_limit: int
    state: ConnectionState
    _acks_fit: bool
    _unacked: dict[int, QoS] | None
    _incoming: list[Packet] | tuple[()]
    _incoming_pos: int
    _topic_chars_ok: int
    _plain_topic_chars: int

    if TYPE_CHECKING:

        def _add_event(self, event: Event) -> None: ...
        # Provided by the engine (mqttproto._connection.Connection) and the role.
        def _encode(self, packet: Packet) -> bytes: ...

        def _resolve_alias(
            self, packet: PublishPacket, maximum: int, *, keep: bool
        ) -> PublishPacket: ...

        def _write(self, data: bytes) -> None: ...

        def _append_out(self, data: bytes) -> None: ...

        def _too_many_properties(self, properties: tuple[tuple[str, str], ...]) -> bool: ...

        def _connected(self, what: str) -> None: ...

        @property
        def client_maximum_packet_size(self) -> int: ...

    # -- received PUBLISH ---------------------------------------------------------

    def _on_publish(self, packet: PublishPacket, now: float) -> MessageReceived | None:
        # The hot path: a plain PUBLISH (QoS 0, no flags, no properties: the
        # reader wrote only its topic and payload into the packet, see
        # _codec_common.PLAIN_PUBLISH) whose topic is short enough to be within
        # max_topic_length and max_topic_levels whatever it holds needs none
        # of the checks below; its event is returned, not queued.
        fields = packet.__dict__
        size = len(fields)
        if size == _PLAIN_PUBLISH and len(fields["topic"]) <= self._plain_topic_chars:
            event = _new_event(MessageReceived)
            _set_packet(event, packet)
            return event
        if (
            # A QoS 1 PUBLISH otherwise plain (its QoS and packet id only):
            # _on_publish_checked's checks for it, in a row.
            size == _PLAIN_QOS
            and fields.get("qos") == 1
            and len(fields["topic"]) <= self._plain_topic_chars
        ):
            config = self.config
            unacked = self._unacked
            packet_id = fields["packet_id"]
            if config.maximum_qos and (unacked is None or packet_id not in unacked):
                held = 0 if unacked is None else len(unacked)
                inbound = self._session._inbound
                if inbound is not None:
                    held += len(inbound.awaiting_release)
                if not self._v5 or held < config.receive_maximum:
                    if unacked is None:
                        unacked = self._unacked = {}
                    unacked[packet_id] = _AT_LEAST_ONCE
                    event = _new_event(MessageReceived)
                    _set_packet(event, packet)
                    return event
        return self._on_publish_checked(packet)

    def _on_publish_checked(self, packet: PublishPacket) -> MessageReceived | None:
        config = self.config
        if packet.topic_alias is not None:
            packet = self._resolve_alias(packet, config.topic_alias_maximum, keep=False)
        topic = packet.topic
        # max_topic_length, counted in bytes only when the characters leave a doubt.
        if len(topic) > self._topic_chars_ok:
            limit = config.max_topic_length
            if len(topic.encode()) > limit:
                raise RemoteProtocolError(
                    f"topic name longer than {limit} bytes", _C.TOPIC_NAME_INVALID
                )
        qos = packet.qos
        if packet.user_properties and self._too_many_properties(packet.user_properties):
            # Refused, not reported: 0x97 for QoS 1/2 (MQTT 5.0 section
            # 3.4.2.1 / 3.5.2.1), QoS 0 dropped. The flow ends here, so a
            # QoS 2 identifier is not held.
            if qos:
                assert packet.packet_id is not None
                kind = _P.PUBACK if qos == 1 else _P.PUBREC
                self._write(encode_ack(kind, packet.packet_id, _C.QUOTA_EXCEEDED, version=_V5))
            return None
        if qos > config.maximum_qos:
            # [MQTT-3.2.2-12]: QoS above Maximum QoS is answered with 0x9B.
            raise RemoteProtocolError(f"QoS {int(qos)} above Maximum QoS", _C.QOS_NOT_SUPPORTED)
        if packet.retain and not config.retain_available:
            # [MQTT-3.2.2-15]: retain when Retain Available is 0 gets 0x9A.
            raise RemoteProtocolError(
                "retained messages are not supported", _C.RETAIN_NOT_SUPPORTED
            )
        if packet.subscription_identifiers:
            # [MQTT-3.3.4-6]: only a server puts Subscription Identifiers in PUBLISH.
            raise RemoteProtocolError("a client PUBLISH carries a Subscription Identifier")
        if topic.count("/") >= config.max_topic_levels:
            raise RemoteProtocolError("topic has too many levels", _C.TOPIC_NAME_INVALID)
        if qos:
            packet_id = packet.packet_id
            assert packet_id is not None
            inbound = self._session._inbound
            awaiting = NO_PACKET_IDS if inbound is None else inbound.awaiting_release
            if qos == 2 and packet_id in awaiting:
                # A retransmission: acknowledge again, deliver once [MQTT-4.3.3-10].
                self._ack(_P.PUBREC, packet_id)
                return None
            unacked = self._unacked
            if unacked is None:
                unacked = self._unacked = {}
            elif packet_id in unacked:
                # Sent again before the application acknowledged it: once is enough.
                return None
            if self._version == _V5 and len(unacked) + len(awaiting) >= config.receive_maximum:
                raise ReceiveMaximumExceeded(
                    f"more than {config.receive_maximum} unacknowledged QoS 1/2 PUBLISH"
                    " received [MQTT-3.3.4-9]"
                )
            unacked[packet_id] = _QOS[qos]
        return message_received(packet)

    def _on_pubrel(self, packet: Packet, now: float) -> None:
        assert isinstance(packet, PubRelPacket)
        inbound = self._session._inbound
        if inbound is not None and inbound.release(packet.packet_id):
            self._ack(_P.PUBCOMP, packet.packet_id)
        elif self._version == _V5:
            # [MQTT-4.3.3-11]: answer PUBREL even for an unknown identifier.
            self._write(
                encode_ack(
                    _P.PUBCOMP, packet.packet_id, _C.PACKET_IDENTIFIER_NOT_FOUND, version=_V5
                )
            )
        else:
            self._ack(_P.PUBCOMP, packet.packet_id)

    def _ack(self, kind: PacketType, packet_id: int) -> None:
        """A 4-byte PUBACK/PUBREC/PUBREL/PUBCOMP with success and no properties."""
        if self._acks_fit:
            self._write(encode_ack(kind, packet_id, version=_V311))

    # -- acks of what we sent -----------------------------------------------------

    def _on_puback(self, packet: Packet, now: float) -> PublishAcknowledged | None:
        assert isinstance(packet, PubAckPacket)
        packet_id = packet.packet_id
        session = self._session
        outbound = session._outbound
        # The hot path of every QoS 1 delivery: OutboundFlow.on_puback,
        # PacketIdAllocator.release and _finish_outbound inlined.
        message = None if outbound is None else outbound.inflight.get(packet_id)
        if message is None:
            return None  # a late duplicate
        assert outbound is not None
        if message.packet.qos != 1:
            raise RemoteProtocolError(f"PUBACK for packet {packet_id}, a QoS 2 PUBLISH")
        inflight = outbound.inflight
        del inflight[packet_id]
        ids = session._packet_ids
        assert ids is not None  # the message in flight took its identifier
        used = ids._used
        used.pop(packet_id, None)
        if not used:  # idle: give back the tables a burst grew (9 kB per 100)
            inflight.clear()
            used.clear()
        event = publish_acknowledged(
            packet_id, packet.reason_code, packet.reason_string, packet.user_properties
        )
        if outbound.queue:
            # What the window now lets out is reported after the ack.
            self._add_event(event)
            self._send_released(outbound.release_queued())
            return None
        return event

    def _on_pubrec(self, packet: Packet, now: float) -> None:
        assert isinstance(packet, PubRecPacket)
        packet_id = packet.packet_id
        outbound = self._session._outbound
        message = None if outbound is None else outbound.on_pubrec(packet_id, packet.reason_code)
        if message is None:
            if self._version == _V5:
                self._write(
                    encode_ack(_P.PUBREL, packet_id, _C.PACKET_IDENTIFIER_NOT_FOUND, version=_V5)
                )
            else:
                self._ack(_P.PUBREL, packet_id)
            return
        if packet.reason_code >= 0x80:
            # A failed PUBREC ends the flow; no PUBREL [MQTT-4.3.3-4].
            self._finish_outbound(
                packet_id,
                publish_acknowledged(
                    packet_id, packet.reason_code, packet.reason_string, packet.user_properties
                ),
            )
            return
        self._ack(_P.PUBREL, packet_id)

    def _on_pubcomp(self, packet: Packet, now: float) -> None:
        assert isinstance(packet, PubCompPacket)
        outbound = self._session._outbound
        if outbound is None or outbound.on_pubcomp(packet.packet_id) is None:
            return
        self._finish_outbound(
            packet.packet_id,
            publish_acknowledged(
                packet.packet_id, packet.reason_code, packet.reason_string, packet.user_properties
            ),
        )

    def _finish_outbound(self, packet_id: int, event: Event) -> None:
        session = self._session
        session.packet_ids.release(packet_id)
        self._add_event(event)
        outbound = session.outbound
        if outbound.queue:
            self._send_released(outbound.release_queued())

    # -- the application's answers --------------------------------------------------

    def acknowledge(
        self,
        packet_id: int,
        reason_code: ReasonCode = ReasonCode.SUCCESS,
        *,
        reason_string: str | None = None,
        user_properties: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Acknowledge a QoS 1/2 message from :class:`~mqttproto.events.MessageReceived`:
        PUBACK (QoS 1) or PUBREC (QoS 2), which the application sends when it
        has taken the message (stored it, routed it). The client's PUBREL is
        then answered with PUBCOMP by the role.

        In MQTT 5 a failure ``reason_code`` refuses the message (a refused QoS
        2 flow ends there); 3.1/3.1.1 acks carry no code, so the message is
        acknowledged as it stands. After the connection closed this does
        nothing: the client sends the message again on its next connection.

        :raises LocalProtocolError: no received message with that identifier
            waits for an acknowledgement, or a code PUBACK cannot carry.
        """
        # Enum members are read from module constants: each read through
        # its class costs more than the rest of the common case.
        if self.state is _CLOSED:
            return
        unacked = self._unacked
        qos = None if unacked is None else unacked.get(packet_id)
        if unacked is None or qos is None:
            raise LocalProtocolError(
                f"no received message with packet id {packet_id} awaits an ack"
            )
        v5 = self._version == _V5
        code = 0 if reason_code is _SUCCESS or not v5 else int(reason_code)
        if reason_string is None and not user_properties:
            kind = _PUBACK if qos == 1 else _PUBREC
            data = encode_ack(kind, packet_id, code, version=_V5 if v5 else _V311)
        else:
            cls = PubAckPacket if qos == 1 else PubRecPacket
            ack = cls(
                packet_id,
                ReasonCode(code),
                reason_string=reason_string if v5 else None,
                user_properties=tuple(user_properties) if v5 else (),
            )
            data = self._encode(ack)
        del unacked[packet_id]
        if not unacked and self._incoming_pos >= len(self._incoming):
            # An idle connection keeps no table; one still reading its
            # input keeps it for the next message.
            self._unacked = None
        if qos == 2 and code < 0x80:
            # Until PUBREL, a resent PUBLISH with this id is not delivered
            # again [MQTT-4.3.3-10]; that outlives the connection.
            self._session.inbound.received_qos2(packet_id)
        if self._acks_fit or len(data) <= self.client_maximum_packet_size:
            self._write(data)

    def publish(
        self,
        topic: str,
        payload: bytes | str = b"",
        *,
        qos: QoS | int = QoS.AT_MOST_ONCE,
        retain: bool = False,
        payload_format_indicator: int | None = None,
        message_expiry_interval: int | None = None,
        response_topic: str | None = None,
        correlation_data: bytes | None = None,
        user_properties: Iterable[tuple[str, str]] = (),
        content_type: str | None = None,
        subscription_identifiers: Iterable[int] = (),
    ) -> int | None:
        """Send an application message to the client; its packet id (None for QoS 0).

        QoS 1/2 messages beyond the client's Receive Maximum (at most
        ``max_inflight_messages``) wait in a queue of ``max_queued_messages``
        and go out in order as acknowledgements come
        (:class:`~mqttproto.events.PublishAcknowledged`). Topic aliases are
        chosen by themselves within the client's Topic Alias Maximum
        (``auto_topic_alias``). In MQTT 3.1/3.1.1 the MQTT 5 properties must
        be left out.

        :raises LocalProtocolError: not connected, the queue is full, the
            message breaks a rule, or it is larger than the client's Maximum
            Packet Size [MQTT-3.1.2-25].
        """
        qos_ = _QOS.get(qos)
        if qos_ is None:
            raise LocalProtocolError(f"QoS must be 0, 1 or 2, not {qos!r}")
        self._connected("publish()")
        if isinstance(payload, str):
            payload = payload.encode()
        session = self._session
        send_now = True
        packet_id = None
        if qos_:
            outbound = session.outbound
            send_now = outbound.has_room()
            if not send_now:
                outbound.check_queue_room()
            packet_id = session.packet_ids.peek()
        packet = PublishPacket(
            topic,
            payload,
            qos_,
            retain,
            False,
            packet_id,
            payload_format_indicator=payload_format_indicator,
            message_expiry_interval=message_expiry_interval,
            response_topic=response_topic,
            correlation_data=correlation_data,
            user_properties=tuple(user_properties),
            subscription_identifiers=tuple(subscription_identifiers),
            content_type=content_type,
        )
        data = self._encode(packet)
        if send_now:
            self._send_publish(packet, data)
        if packet_id is not None:
            session.packet_ids.allocate()
            outbound = session.outbound
            if send_now:
                outbound.start(packet)
            else:
                outbound.enqueue(packet)
        return packet_id

    def publish_prepared(self, prepared: PreparedPublish) -> int | None:
        """Send a message encoded once for many clients (see
        :class:`~mqttproto.codec.PreparedPublish`); its packet id (None for QoS 0).

        As :meth:`publish`, without encoding: the prepared bytes are written
        with a packet identifier of this connection's. The prepared version
        must be this connection's (3.1 and 3.1.1 share theirs).

        :raises LocalProtocolError: as :meth:`publish`.
        """
        if not prepared.qos and prepared.v5 is self._v5 and prepared.size <= self._plain_limit:
            # The hot path of a fan-out: the shared bytes appended, no copy.
            out = self._output
            if out is None:
                self._output = [prepared.head]
            else:
                out.append(prepared.head)
            self.bytes_to_send += prepared.size
            return None
        if (
            self.state is not _CONNECTED
            or prepared.v5 is not self._v5
            or prepared.size > self._max_out
        ):
            self._refuse_prepared(prepared)
        if not prepared.qos:
            # QoS 0 to a client that takes topic aliases (else the hot path
            # above took it): the shared bytes of the aliased form.
            if self._aliasing:
                prepared = self._alias_prepared(prepared)
            self._append_out(prepared.head)
            self.bytes_to_send += prepared.size
            return None
        session = self._session
        outbound = session._outbound
        if outbound is None:
            outbound = session.outbound
        inflight = outbound.inflight
        if outbound.queue or len(inflight) >= outbound.send_quota:
            outbound.check_queue_room()
            packet_id = session.packet_ids.allocate()
            # The alias is chosen when it is written (_send_released).
            outbound.enqueue(attrs.evolve(prepared.packet, packet_id=packet_id))
            return packet_id
        # Kept for a resend, which goes without alias [MQTT-3.3.2-7].
        packet = prepared.packet
        if self._aliasing:
            prepared = self._alias_prepared(prepared)
        # The hot path of a QoS 1/2 fan-out: PacketIdAllocator.allocate and
        # OutboundFlow.start inlined, each call costing more than its work
        # (and this inlined in turn in the broker's PUBACK run, broker._acks).
        # The next identifier in turn, unless still in use [MQTT-2.2.1-3]
        # (then the allocator searches, or raises when all are taken).
        ids = session._packet_ids
        if ids is None:
            ids = session.packet_ids
        used = ids._used
        packet_id = ids._next
        if packet_id in used:
            packet_id = ids.allocate()
        else:
            used[packet_id] = None
            ids._next = packet_id % MAX_PACKET_ID + 1
        # Three pieces, joined once by data_to_send(): the payload in
        # ``tail`` is shared by every receiver, not copied per receiver.
        out = self._output
        if out is None:
            out = self._output = []
        out.append(prepared.head)
        out.append(packet_id_bytes(packet_id))
        out.append(prepared.tail)
        self.bytes_to_send += prepared.size
        message = _new_outbound(OutboundMessage)
        message.packet = packet
        message.stage = _PUBLISHED
        message.packet_id = packet_id
        inflight[packet_id] = message
        return packet_id

    def _refuse_prepared(self, prepared: PreparedPublish) -> None:
        """Raise why ``publish_prepared`` cannot send ``prepared``."""
        self._connected("publish_prepared()")
        if prepared.v5 is not self._v5:
            raise LocalProtocolError(
                f"prepared for {prepared.version!r}, not for this connection's {self._version!r}"
            )
        raise LocalProtocolError(
            f"PUBLISH of {prepared.size} bytes exceeds the client's Maximum Packet Size"
            " [MQTT-3.1.2-25]"
        )

    # -- sending PUBLISH ----------------------------------------------------------

    def _send_publish(self, packet: PublishPacket, data: bytes) -> None:
        """Write an encoded PUBLISH, with a topic alias when that helps."""
        if self._aliasing:
            data = self._aliased(packet, data)
        self._write(data)

    def _send_released(self, packets: Iterable[PublishPacket]) -> None:
        """Send queued messages that just got room in the window."""
        session = self._session
        for packet in packets:
            packet_id = packet.packet_id
            assert packet_id is not None
            try:
                data = self._encode(packet)
            except LocalProtocolError as exc:
                # Too large for the client [MQTT-3.1.2-25]: dropped, reported.
                del session.outbound.inflight[packet_id]
                session.packet_ids.release(packet_id)
                self._add_event(PublishDiscarded(packet_id, str(exc)))
                continue
            self._send_publish(packet, data)
