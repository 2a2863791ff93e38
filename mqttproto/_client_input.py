"""What a client connection does with the packets a server sends, besides
the QoS flows: :class:`ClientInput`, a mixin of
:class:`~mqttproto.client.ClientConnection`.

CONNACK (the server's limits, the session resumed or not), SUBACK and
UNSUBACK, PINGRESP, DISCONNECT and AUTH. PUBLISH and its acknowledgements are
in :mod:`._client_flows`. A handler checks the packet against what was asked
and raises :class:`~mqttproto.errors.RemoteProtocolError` when it does not
match; the engine then sends the goodbye.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ._client_flows import ServerLimits
from ._qos import InboundFlow, OutboundFlow, PacketIdAllocator
from ._state import ConnectionState, Input
from .enums import PacketType, ProtocolVersion, QoS, ReasonCode
from .errors import LocalProtocolError, RemoteProtocolError
from .events import (
    AuthChallenged,
    ConnectionAccepted,
    ConnectionRefused,
    Disconnected,
    Event,
    PublishDiscarded,
    Reauthenticated,
    SubscribeAcknowledged,
    UnsubscribeAcknowledged,
)
from .packets import (
    AuthPacket,
    ConnAckPacket,
    ConnectPacket,
    DisconnectPacket,
    Packet,
    PublishPacket,
    SubAckPacket,
    UnsubAckPacket,
)

__all__ = ["RECEIVABLE", "ClientInput"]

_S = ConnectionState
_P = PacketType
_V5 = ProtocolVersion.MQTT_5_0

#: What a client may receive in each state. The server sends CONNACK before
#: anything but AUTH [MQTT-3.2.0-1]; it never sends CONNECT, PUBLISH before
#: CONNACK, SUBSCRIBE, UNSUBSCRIBE or PINGREQ.
RECEIVABLE: dict[ConnectionState, frozenset[PacketType]] = {
    _S.IDLE: frozenset(),
    _S.CONNECTING: frozenset({_P.CONNACK, _P.AUTH}),
    _S.CONNECTED: frozenset(
        {
            _P.PUBLISH,
            _P.PUBACK,
            _P.PUBREC,
            _P.PUBREL,
            _P.PUBCOMP,
            _P.SUBACK,
            _P.UNSUBACK,
            _P.PINGRESP,
            _P.DISCONNECT,
            _P.AUTH,
        }
    ),
    _S.CLOSED: frozenset(),
}


class ClientInput:
    """The packet-handling half of :class:`~mqttproto.client.ClientConnection`."""

    state: ConnectionState
    client_id: str
    _version: ProtocolVersion
    _out: list[bytes]
    _events: deque[Event]
    _packet_ids: PacketIdAllocator
    _outbound: OutboundFlow
    _inbound: InboundFlow
    _limits: ServerLimits
    _connect: ConnectPacket | None
    _keep_alive: int
    _ping_sent_at: float | None
    _pending_subscribes: dict[int, int]
    _pending_unsubscribes: dict[int, int]
    _session_may_persist: bool
    _has_connected: bool
    _auth_challenged: bool
    _reauthenticating: bool
    _acks_fit: bool
    _peer_max_packet_size: int | None

    if TYPE_CHECKING:

        def _encode(self, packet: Packet) -> bytes: ...

        def _move(self, event: Input) -> None: ...

        def _end_connection(self) -> None: ...

        def _discard_session(self) -> list[int]: ...

        def _drop_queued_over_limits(self) -> None: ...

        def _send_released(self, packets: Iterable[PublishPacket]) -> None: ...

    def _on_connack(self, packet: Packet, now: float) -> None:
        assert isinstance(packet, ConnAckPacket)
        if packet.reason_code >= 0x80:
            self._move(Input.RECV_CONNACK_REFUSED)
            self._end_connection()
            self._events.append(
                ConnectionRefused(
                    packet.reason_code,
                    reason_string=packet.reason_string,
                    server_reference=packet.server_reference,
                    user_properties=packet.user_properties,
                )
            )
            return
        connect = self._connect
        assert connect is not None
        has_state = bool(len(self._outbound) or self._inbound.in_use())
        if packet.session_present and connect.clean_start:
            # [MQTT-3.2.2-4] (5.0): a client without session state closes.
            raise RemoteProtocolError("session present in answer to a clean start")
        if self._auth_challenged or (
            packet.authentication_method is not None
            and packet.authentication_method != connect.authentication_method
        ):
            raise RemoteProtocolError("CONNACK does not match the authentication exchange")
        self._move(Input.RECV_CONNACK)
        limits = self._limits = ServerLimits(
            receive_maximum=packet.receive_maximum or 65535,
            maximum_qos=QoS.EXACTLY_ONCE if packet.maximum_qos is None else packet.maximum_qos,
            retain_available=packet.retain_available is not False,
            maximum_packet_size=packet.maximum_packet_size,
            topic_alias_maximum=packet.topic_alias_maximum or 0,
            wildcard_subscription_available=packet.wildcard_subscription_available is not False,
            subscription_identifiers_available=packet.subscription_identifiers_available
            is not False,
            shared_subscription_available=packet.shared_subscription_available is not False,
        )
        self._peer_max_packet_size = limits.maximum_packet_size
        self._acks_fit = limits.maximum_packet_size is None or limits.maximum_packet_size >= 4
        if packet.server_keep_alive is not None:
            self._keep_alive = packet.server_keep_alive
        if packet.assigned_client_identifier is not None:
            self.client_id = packet.assigned_client_identifier
        expiry = (
            packet.session_expiry_interval
            if packet.session_expiry_interval is not None
            else connect.session_expiry_interval
        )
        self._session_may_persist = (
            bool(expiry) if self._version == _V5 else not connect.clean_start
        )
        self._has_connected = True
        self._events.append(
            ConnectionAccepted(
                packet.session_present,
                assigned_client_identifier=packet.assigned_client_identifier,
                keep_alive=self._keep_alive,
                receive_maximum=limits.receive_maximum,
                maximum_qos=limits.maximum_qos,
                retain_available=limits.retain_available,
                maximum_packet_size=limits.maximum_packet_size,
                topic_alias_maximum=limits.topic_alias_maximum,
                wildcard_subscription_available=limits.wildcard_subscription_available,
                subscription_identifiers_available=limits.subscription_identifiers_available,
                shared_subscription_available=limits.shared_subscription_available,
                session_expiry_interval=packet.session_expiry_interval,
                response_information=packet.response_information,
                server_reference=packet.server_reference,
                reason_string=packet.reason_string,
                user_properties=packet.user_properties,
                authentication_method=packet.authentication_method,
                authentication_data=packet.authentication_data,
            )
        )
        outbound = self._outbound
        outbound.send_quota = limits.receive_maximum
        # MQTT 3.1 has no session present flag: a 3.1 server resumes a
        # session that was not clean, so the client resends.
        resumed = packet.session_present or self._version == ProtocolVersion.MQTT_3_1
        if has_state and not resumed and not connect.clean_start:
            # The server has no session: ours must go too, messages still
            # queued included: they are part of the session state [MQTT-3.2.2-5].
            for packet_id in self._discard_session():
                self._events.append(
                    PublishDiscarded(packet_id, "the server did not resume the session")
                )
            return
        for resend in outbound.resend():
            # Resent in full: topic aliases do not outlive a connection.
            try:
                self._out.append(self._encode(resend))
            except LocalProtocolError as exc:
                # Too big for the server's new Maximum Packet Size.
                assert resend.packet_id is not None
                del outbound.inflight[resend.packet_id]
                self._packet_ids.release(resend.packet_id)
                self._events.append(PublishDiscarded(resend.packet_id, str(exc)))
        self._drop_queued_over_limits()
        if outbound.queue:
            self._send_released(outbound.release_queued())

    def _on_suback(self, packet: Packet, now: float) -> None:
        assert isinstance(packet, SubAckPacket)
        count = self._pending_subscribes.pop(packet.packet_id, None)
        if count is None:
            raise RemoteProtocolError(
                f"SUBACK for packet {packet.packet_id}, which is not a pending SUBSCRIBE"
            )
        self._packet_ids.release(packet.packet_id)
        if len(packet.reason_codes) != count:
            # [MQTT-3.8.4-6]: one return code per topic filter.
            raise RemoteProtocolError(
                f"SUBACK carries {len(packet.reason_codes)} codes for {count} filters [MQTT-3.9.3-1]"
            )
        self._events.append(
            SubscribeAcknowledged(
                packet.packet_id, packet.reason_codes, packet.reason_string, packet.user_properties
            )
        )

    def _on_unsuback(self, packet: Packet, now: float) -> None:
        assert isinstance(packet, UnsubAckPacket)
        count = self._pending_unsubscribes.pop(packet.packet_id, None)
        if count is None:
            raise RemoteProtocolError(
                f"UNSUBACK for packet {packet.packet_id}, which is not a pending UNSUBSCRIBE"
            )
        self._packet_ids.release(packet.packet_id)
        if self._version == _V5 and len(packet.reason_codes) != count:
            raise RemoteProtocolError(
                f"UNSUBACK carries {len(packet.reason_codes)} codes for {count} filters [MQTT-3.11.3-1]"
            )
        self._events.append(
            UnsubscribeAcknowledged(
                packet.packet_id, packet.reason_codes, packet.reason_string, packet.user_properties
            )
        )

    def _on_pingresp(self, packet: Packet, now: float) -> None:
        self._ping_sent_at = None

    def _on_disconnect(self, packet: Packet, now: float) -> None:
        assert isinstance(packet, DisconnectPacket)
        if self._version != _V5:
            raise RemoteProtocolError("a 3.1/3.1.1 server never sends DISCONNECT")
        self._move(Input.RECV_DISCONNECT)
        self._end_connection()
        self._events.append(
            Disconnected(
                packet.reason_code,
                by_server=True,
                server_reference=packet.server_reference,
                reason_string=packet.reason_string,
                session_expiry_interval=packet.session_expiry_interval,
                user_properties=packet.user_properties,
            )
        )

    def _on_auth(self, packet: Packet, now: float) -> None:
        assert isinstance(packet, AuthPacket)
        connect = self._connect
        assert connect is not None
        if connect.authentication_method is None:
            # [MQTT-4.12.0-6]: no method in CONNECT, no AUTH from the server.
            raise RemoteProtocolError("AUTH from a server when no authentication method was used")
        if packet.authentication_method != connect.authentication_method:
            raise RemoteProtocolError("AUTH with a different authentication method [MQTT-4.12.0-5]")
        code = packet.reason_code
        if code == ReasonCode.CONTINUE_AUTHENTICATION:
            self._move(Input.RECV_AUTH)
            self._auth_challenged = True
            self._events.append(
                AuthChallenged(
                    packet.authentication_method,
                    packet.authentication_data,
                    code,
                    packet.reason_string,
                    packet.user_properties,
                )
            )
        elif code == ReasonCode.SUCCESS and self.state is _S.CONNECTED and self._reauthenticating:
            self._move(Input.RECV_AUTH)
            self._reauthenticating = False
            self._events.append(
                Reauthenticated(
                    packet.authentication_method,
                    packet.authentication_data,
                    packet.reason_string,
                    packet.user_properties,
                )
            )
        else:
            raise RemoteProtocolError(f"unexpected AUTH with reason {code.name}")
