"""What a server connection reads: :class:`ServerInput`, a mixin of
:class:`~mqttproto.server.ServerConnection`.

Packets are handled one by one as the application takes events
(``next_event``): the lifecycle (CONNECT, AUTH, DISCONNECT), SUBSCRIBE and
UNSUBSCRIBE, PINGREQ, the timers and the goodbye a protocol error sends. The
application's answers are in :mod:`._server_answers`, the QoS flows in
:mod:`._server_flows`.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ._keepalive import receive_deadline
from ._state import ConnectionState, Input
from .codec import PacketReader, encode_packet
from .config import ServerConfig
from .enums import PacketType, ProtocolVersion, QoS, ReasonCode
from .errors import ConnectRefusal, RemoteProtocolError
from .events import (
    AuthReceived,
    ConnectRequested,
    Disconnected,
    Event,
    SubscribeRequested,
    UnsubscribeRequested,
)
from .packets import (
    AuthPacket,
    ConnAckPacket,
    ConnectPacket,
    DisconnectPacket,
    Packet,
    PingRespPacket,
    SubscribePacket,
    UnsubscribePacket,
)

__all__ = ["RECEIVABLE", "ServerInput"]

#: PINGRESP is the same two bytes in every version.
_PINGRESP = encode_packet(PingRespPacket(), version=ProtocolVersion.MQTT_3_1_1)

_S = ConnectionState
_P = PacketType
_C = ReasonCode
_V5 = ProtocolVersion.MQTT_5_0
_QOS: dict[int, QoS] = {int(q): q for q in QoS}

#: What a server may receive in each state. In CONNECTING only AUTH and
#: DISCONNECT are read; anything else the client sends right after CONNECT
#: waits until the application accepted it [MQTT-3.1.4-5].
RECEIVABLE: dict[ConnectionState, frozenset[PacketType]] = {
    # [MQTT-3.1.0-1]: the first packet is CONNECT (the reader refuses others).
    _S.IDLE: frozenset({_P.CONNECT}),
    _S.CONNECTING: frozenset({_P.AUTH, _P.DISCONNECT}),
    # A second CONNECT is a protocol error [MQTT-3.1.0-2].
    _S.CONNECTED: frozenset(
        {
            _P.PUBLISH,
            _P.PUBACK,
            _P.PUBREC,
            _P.PUBREL,
            _P.PUBCOMP,
            _P.SUBSCRIBE,
            _P.UNSUBSCRIBE,
            _P.PINGREQ,
            _P.DISCONNECT,
            _P.AUTH,
        }
    ),
    _S.CLOSED: frozenset(),
}

#: A PUBACK without reason code or properties, as the 16-bit word that
#: begins it (type 4, flags 0, remaining length 2), in the machine's order.
_PUBACK_WORD = 0x0240 if sys.byteorder == "little" else 0x4002
_SWAP = sys.byteorder == "little"

#: Whose turn it is while CONNECTING: the application's (after CONNECT, or
#: after the client's AUTH) or the client's (after our AUTH challenge).
_APP, _CLIENT = True, False


class _EndOfStream(RemoteProtocolError):
    """The client closed its side after the packets still to handle."""


def _utf8_length(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


class ServerInput:
    """The reading half of :class:`~mqttproto.server.ServerConnection`."""

    if not TYPE_CHECKING:
        # ServerConnection declares the slots; a mixin without __slots__
        # would give every connection a __dict__ and a weakref slot (40
        # bytes). Hidden from mypy, which would take the mixin's writes to
        # those slots for writes to names outside its own empty __slots__.
        __slots__ = ()

    config: ServerConfig
    state: ConnectionState
    client_id: str
    _version: ProtocolVersion | None
    _event_queue: list[Event] | None
    _connect: ConnectPacket | None
    _expiry_zero: bool
    _auth_turn: bool
    _reauth: bool
    _held: list[Packet] | None
    _incoming: list[Packet] | tuple[()]
    _incoming_pos: int
    _incoming_error: RemoteProtocolError | None
    _reader: PacketReader
    _input_now: float
    _opened_at: float | None
    _last_received: float
    _keep_alive: int
    _peer_max_packet_size: int | None
    _acks_fit: bool
    _v5: bool
    _max_out: int
    _aliasing: bool
    _alias_limit: int
    _pending_subscribes: dict[int, int] | None
    _pending_unsubscribes: dict[int, int] | None
    _HANDLER_FUNCTIONS: dict[type, Any]
    _RECEIVABLE_CLASSES: dict[ConnectionState, frozenset[type]]

    if TYPE_CHECKING:

        def _add_event(self, event: Event) -> None: ...

        def _move(self, event: Input) -> None: ...

        def _write(self, data: bytes) -> None: ...

        def _send(self, packet: Packet) -> None: ...

        def _encode(self, packet: Packet) -> bytes: ...

        def _close(self, event: Disconnected) -> None: ...

        def _protocol_error(self, exc: RemoteProtocolError, now: float) -> None: ...

        def _waiting_connect(self, what: str) -> ConnectPacket: ...

        def _connected(self, what: str) -> None: ...

        def suback(
            self,
            packet_id: int,
            reason_codes: Sequence[ReasonCode | int],
            *,
            reason_string: str | None = None,
            user_properties: Iterable[tuple[str, str]] = (),
        ) -> None: ...

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must be called next; None: no timer.

        Before the CONNECT is answered (and during an enhanced authentication
        exchange) it is the connect timeout from :attr:`opened
        <ServerConfig.connect_timeout>`; once connected, one and a half times
        the keep-alive after the last packet received [MQTT-3.1.2-24].
        """
        state = self.state
        if state is _S.CONNECTED:
            return receive_deadline(self._last_received, self._keep_alive)
        if state is _S.CLOSED or self._opened_at is None:
            return None
        timeout = self.config.connect_timeout
        return None if timeout is None else self._opened_at + timeout

    def handle_timer(self, now: float) -> None:
        """Close the connection if its deadline (:meth:`get_timer`) passed.

        A silent client is closed: MQTT 5 clients get DISCONNECT 0x8D *Keep
        alive timeout* [MQTT-3.1.2-22]; a connection without an answered
        CONNECT within the connect timeout is closed without a word
        (:class:`~mqttproto.events.Disconnected` 0xA0). Calling it early
        changes nothing.
        """
        if self._opened_at is None:
            self._opened_at = now
        deadline = self.get_timer()
        if deadline is None or now < deadline:
            return
        if self.state is _S.CONNECTED:
            if self._version == _V5:
                self._send(DisconnectPacket(_C.KEEP_ALIVE_TIMEOUT))
            reason = _C.KEEP_ALIVE_TIMEOUT
        else:
            reason = _C.MAXIMUM_CONNECT_TIME
        self._move(Input.TIMEOUT)
        self._close(Disconnected(reason))

    def _handle_next(self) -> bool:
        """Handle the next packet received; False when there is nothing to do
        now (no packet, or the application must answer first).

        :raises RemoteProtocolError: as :meth:`next_event`.
        """
        if self.state is _S.CONNECTING and self._auth_turn is _APP:
            return False  # the CONNECT (or the client's AUTH) waits for its answer
        incoming = self._incoming
        now = self._input_now
        pos = self._incoming_pos
        if pos >= len(incoming):
            error = self._incoming_error
            if error is None:
                if pos:
                    # All handled: an idle connection keeps no packets, nor
                    # the list that held them.
                    self._incoming = ()
                    self._incoming_pos = 0
                return False
            self._incoming_error = None
            if isinstance(error, _EndOfStream):
                self._end_of_stream(now)
                return True
            if self._version is not None and isinstance(error, ConnectRefusal):
                # A second CONNECT, whatever it holds, is a Protocol Error
                # [MQTT-3.1.0-2]: its own level or refusal does not count.
                second = RemoteProtocolError("a second CONNECT", _C.PROTOCOL_ERROR)
                self._protocol_error(second, now)
                raise second from error
            self._protocol_error(error, now)
            raise error
        packet = incoming[pos]
        self._incoming_pos = pos + 1
        kind = type(packet)
        state = self.state
        if kind not in self._RECEIVABLE_CLASSES[state]:
            if state is _S.CONNECTING and kind is not ConnectPacket:
                # Sent right after CONNECT, during an authentication
                # exchange: read once the client is accepted [MQTT-3.1.4-5].
                if self._held is None:
                    self._held = []
                self._held.append(packet)
                return True
            error = RemoteProtocolError(
                f"{packet.packet_type.name} may not be received by a server in state {state.value}"
            )
            self._protocol_error(error, now)
            raise error
        try:
            event = self._HANDLER_FUNCTIONS[kind](self, packet, now)
        except RemoteProtocolError as exc:
            self._protocol_error(exc, now)
            raise
        if event is not None:
            self._add_event(event)
        return True

    def _plain_pubacks(self, data: bytes, now: float) -> array[int] | None:
        """The packet ids of ``data`` if it is nothing but whole 4-byte
        PUBACKs (no reason code, no properties, non-zero ids) that a
        connected client sends while nothing else of its input waits; else
        None, and nothing changed.

        Then the caller handles them itself, in order, as the events of
        :meth:`receive_data` would (the broker's run of acknowledgements,
        see ``mqttproto.broker._acks``): keep-alive counts them as received.
        """
        if (
            len(data) & 3
            or self.state is not _S.CONNECTED
            or self._event_queue is not None
            or self._incoming_pos < len(self._incoming)
            or self._incoming_error is not None
            or self._reader.buffered
        ):
            return None
        words = array("H", data)
        heads = words[0::2]
        if heads.count(_PUBACK_WORD) != len(heads):
            return None
        ids = words[1::2]
        if _SWAP:
            ids.byteswap()
        if 0 in ids:
            return None  # [MQTT-2.2.1-3]: the reader says so, the slow way
        self._last_received = now
        self._input_now = now
        return ids

    def _end_of_stream(self, now: float) -> None:
        self._move(Input.RECV_EOF)
        self._connection_ended(_C.UNSPECIFIED_ERROR, now)

    def _too_many_properties(self, properties: tuple[tuple[str, str], ...]) -> bool:
        """Whether user properties pass ``max_user_properties`` / ``max_user_property_bytes``."""
        config = self.config
        if len(properties) > config.max_user_properties:
            return True
        limit = config.max_user_property_bytes
        size = sum(len(name) + len(value) for name, value in properties)
        if size * 4 <= limit:
            return False
        return sum(_utf8_length(name) + _utf8_length(value) for name, value in properties) > limit

    def _goodbye(self, exc: RemoteProtocolError) -> Packet | None:
        if self.state is _S.CONNECTED:
            if self._version == _V5:
                return DisconnectPacket(exc.reason_code, reason_string=str(exc)[:200])
            return None
        # Before CONNACK: a refusing CONNACK where the version is known
        # [MQTT-3.2.2-6 (3.1.1)] / [MQTT-3.2.2-7 (5.0)]; a malformed CONNECT
        # just closes in 3.1.1 [MQTT-3.1.4-1].
        version = self._version
        if isinstance(exc, ConnectRefusal):
            version = exc.protocol_version
            if version is None and exc.reason_code == _C.UNSUPPORTED_PROTOCOL_VERSION:
                # An unknown level: answered as 3.1.1 does, return code 1 [MQTT-3.1.2-2].
                version = ProtocolVersion.MQTT_3_1_1
        if version is None:
            return None
        self._version = version
        if version != _V5 and not isinstance(exc, ConnectRefusal):
            return None
        return ConnAckPacket(False, exc.reason_code)

    def _connection_ended(self, reason_code: ReasonCode, now: float) -> None:
        self._close(Disconnected(reason_code))

    def _on_connect(self, packet: Packet, now: float) -> None:
        assert isinstance(packet, ConnectPacket)
        self._move(Input.RECV_CONNECT)
        version = packet.protocol_version
        self._version = version
        self._connect = packet
        self._expiry_zero = not packet.session_expiry_interval
        self.client_id = packet.client_id
        if version == _V5:
            self._v5 = True
            self._peer_max_packet_size = packet.maximum_packet_size
            if packet.maximum_packet_size is not None:
                self._max_out = packet.maximum_packet_size
            self._acks_fit = packet.maximum_packet_size is None or packet.maximum_packet_size >= 4
            config = self.config
            # [MQTT-3.3.2-11]: never above the client's Topic Alias Maximum.
            self._alias_limit = min(packet.topic_alias_maximum or 0, config.auto_topic_alias_limit)
            self._aliasing = bool(self._alias_limit) and config.auto_topic_alias
        config = self.config
        if _utf8_length(packet.client_id) > config.max_client_id_length:
            # [MQTT-3.1.3-8] (5.0) / [MQTT-3.1.3-9] (3.1.1): 0x85 / return code 2.
            raise ConnectRefusal(
                "client identifier too long", _C.CLIENT_IDENTIFIER_NOT_VALID, version
            )
        if version == _V5:
            properties = packet.user_properties
            if packet.will is not None:
                properties = properties + packet.will.user_properties
            if properties and self._too_many_properties(properties):
                raise ConnectRefusal("too many user properties", _C.QUOTA_EXCEEDED, version)
        elif packet.authentication_method is not None:
            raise RemoteProtocolError("authentication method outside MQTT 5")
        will = packet.will
        if will is not None:
            if will.qos > config.maximum_qos:
                raise ConnectRefusal("will QoS exceeds Maximum QoS", _C.QOS_NOT_SUPPORTED, version)
            if will.retain and not config.retain_available:
                raise ConnectRefusal(
                    "retained wills are not supported", _C.RETAIN_NOT_SUPPORTED, version
                )
            if will.topic.count("/") >= config.max_topic_levels:
                raise ConnectRefusal("will topic too deep", _C.TOPIC_NAME_INVALID, version)
            if _utf8_length(will.topic) > config.max_topic_length:
                raise ConnectRefusal("will topic too long", _C.TOPIC_NAME_INVALID, version)
        self._auth_turn = _APP
        self._add_event(
            ConnectRequested(
                packet.client_id,
                packet.clean_start,
                packet.keep_alive,
                packet.username,
                packet.password,
                packet.will,
                version,
                session_expiry_interval=packet.session_expiry_interval,
                receive_maximum=packet.receive_maximum,
                maximum_packet_size=packet.maximum_packet_size,
                topic_alias_maximum=packet.topic_alias_maximum,
                request_response_information=packet.request_response_information,
                request_problem_information=packet.request_problem_information,
                user_properties=packet.user_properties,
                authentication_method=packet.authentication_method,
                authentication_data=packet.authentication_data,
            )
        )

    def _on_auth(self, packet: Packet, now: float) -> None:
        assert isinstance(packet, AuthPacket)
        connect = self._connect  # None once accepted without a method
        method = connect.authentication_method if connect is not None else None
        if method is None or packet.authentication_method != method:
            # [MQTT-4.12.0-5]: the same method throughout; no method, no AUTH.
            raise RemoteProtocolError("AUTH with a different or no authentication method")
        code = packet.reason_code
        if self.state is _S.CONNECTING:
            if self._auth_turn is _APP:
                raise RemoteProtocolError("AUTH before the server answered the previous one")
            if code != _C.CONTINUE_AUTHENTICATION:
                raise RemoteProtocolError("AUTH during CONNECT must continue authentication")
            self._move(Input.RECV_AUTH)
            self._auth_turn = _APP
        else:
            # Re-authentication [MQTT-4.12.1]: 0x19 starts it, 0x18 continues
            # it, each after the server's answer.
            if self._reauth and self._auth_turn is _APP:
                raise RemoteProtocolError("AUTH before the server answered the previous one")
            if not (
                (code == _C.RE_AUTHENTICATE and not self._reauth)
                or (code == _C.CONTINUE_AUTHENTICATION and self._reauth)
            ):
                raise RemoteProtocolError(f"unexpected AUTH {code.name}")
            self._move(Input.RECV_AUTH)
            self._reauth = True
            self._auth_turn = _APP
        assert packet.authentication_method is not None
        self._add_event(
            AuthReceived(
                code,
                packet.authentication_method,
                packet.authentication_data,
                packet.reason_string,
                packet.user_properties,
            )
        )

    def _on_subscribe(self, packet: Packet, now: float) -> None:
        assert isinstance(packet, SubscribePacket)
        packet_id = packet.packet_id
        pending = self._pending_subscribes
        if pending is None:
            pending = self._pending_subscribes = {}
        elif packet_id in pending:
            raise RemoteProtocolError(
                f"SUBSCRIBE {packet_id} while the previous one with that id waits for SUBACK"
            )
        if packet.user_properties and self._too_many_properties(packet.user_properties):
            # Refused as a whole: 0x97 for each filter (3.1.1: 0x80).
            pending[packet_id] = len(packet.subscriptions)
            self.suback(packet_id, [_C.QUOTA_EXCEEDED] * len(packet.subscriptions))
            return
        for sub in packet.subscriptions:
            if sub.no_local and sub.topic_filter.startswith("$share/"):
                # [MQTT-3.8.3-4]: No Local on a shared subscription.
                raise RemoteProtocolError("No Local on a shared subscription")
        pending[packet_id] = len(packet.subscriptions)
        self._add_event(
            SubscribeRequested(
                packet_id,
                tuple(packet.subscriptions),
                packet.subscription_identifier,
                packet.user_properties,
            )
        )

    def _on_unsubscribe(self, packet: Packet, now: float) -> None:
        assert isinstance(packet, UnsubscribePacket)
        if packet.user_properties and self._too_many_properties(packet.user_properties):
            # UNSUBACK has no quota code (MQTT 5.0 section 3.11.2.1): the
            # connection ends with DISCONNECT 0x97.
            raise RemoteProtocolError("too many user properties", _C.QUOTA_EXCEEDED)
        packet_id = packet.packet_id
        pending = self._pending_unsubscribes
        if pending is None:
            pending = self._pending_unsubscribes = {}
        elif packet_id in pending:
            raise RemoteProtocolError(
                f"UNSUBSCRIBE {packet_id} while the previous one with that id waits for UNSUBACK"
            )
        pending[packet_id] = len(packet.topic_filters)
        self._add_event(
            UnsubscribeRequested(packet_id, tuple(packet.topic_filters), packet.user_properties)
        )

    def _on_pingreq(self, packet: Packet, now: float) -> None:
        # [MQTT-3.12.4-1]: the server answers PINGREQ with PINGRESP.
        self._write(_PINGRESP)

    def _on_disconnect(self, packet: Packet, now: float) -> None:
        assert isinstance(packet, DisconnectPacket)
        expiry = packet.session_expiry_interval
        if expiry and self._expiry_zero:
            # [MQTT-3.14.2-2]: 0 in CONNECT cannot become non-zero.
            raise RemoteProtocolError("session expiry interval raised in DISCONNECT")
        self._move(Input.RECV_DISCONNECT)
        self._close(
            Disconnected(
                packet.reason_code,
                server_reference=packet.server_reference,
                reason_string=packet.reason_string,
                session_expiry_interval=expiry,
                user_properties=packet.user_properties,
                by_client=True,
            )
        )
