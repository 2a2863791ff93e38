"""The server side of one network connection: :class:`BrokerConnection`.

It is the shared :class:`~mqttproto._connection.Connection` engine with the
server's state table and packet handlers. It keeps what belongs to one
network connection only (keep-alive, the client's topic aliases and limits,
the enhanced-authentication exchange, the input that waits while its
authentication is being computed) and hands everything that concerns
sessions and routing to its :class:`~mqttproto.broker.Broker`.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from ._connection import Connection
from ._keepalive import receive_deadline
from ._state import ConnectionState, Input, transition
from .codec import PacketReader
from .enums import PacketType, ProtocolVersion, ReasonCode
from .errors import ConnectRefusal, RemoteProtocolError
from .packets import (
    AuthPacket,
    ConnAckPacket,
    ConnectPacket,
    DisconnectPacket,
    Packet,
    PubAckPacket,
    PubCompPacket,
    PubRecPacket,
    PubRelPacket,
    SubscribePacket,
    UnsubscribePacket,
)

if TYPE_CHECKING:
    from ._broker_auth import AuthenticationJob
    from ._session import Session
    from .auth import ConnectInfo
    from .broker import Broker

__all__ = ["BrokerConnection"]

_S = ConnectionState
_P = PacketType
_V5 = ProtocolVersion.MQTT_5_0
_C = ReasonCode
_ACK = struct.Struct(">BBH").pack
_ACK_CODE = struct.Struct(">BBHB").pack
_PINGRESP = b"\xd0\x00"

_RECEIVABLE: dict[ConnectionState, frozenset[PacketType]] = {
    # [MQTT-3.1.0-1]: the first packet is CONNECT (the reader refuses others).
    _S.IDLE: frozenset({_P.CONNECT}),
    # During enhanced authentication only AUTH, or DISCONNECT to give up.
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


def _utf8_length(text: str) -> int:
    """The UTF-8 length of ``text`` (its character count when it is ASCII)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


class BrokerConnection(Connection):
    """The server side of one network connection, without I/O.

    Made by :meth:`Broker.open_connection`; the broker feeds it and routes
    what it receives. It keeps what belongs to the network connection only:
    keep-alive, topic aliases from the client, the client's limits (Receive
    Maximum, Maximum Packet Size) and the enhanced-authentication exchange.
    """

    RECEIVABLE = _RECEIVABLE
    HANDLERS: ClassVar[dict[PacketType, str]] = {
        _P.CONNECT: "_on_connect",
        _P.PUBACK: "_on_puback",
        _P.PUBREC: "_on_pubrec",
        _P.PUBREL: "_on_pubrel",
        _P.PUBCOMP: "_on_pubcomp",
        _P.SUBSCRIBE: "_on_subscribe",
        _P.UNSUBSCRIBE: "_on_unsubscribe",
        _P.PINGREQ: "_on_pingreq",
        _P.DISCONNECT: "_on_disconnect",
        _P.AUTH: "_on_auth",
    }
    _role = "server"

    __slots__ = (
        "_topic_chars_ok",
        "address",
        "assigned_id",
        "auth_info",
        "auth_job",
        "backlog",
        "broker",
        "client_id",
        "connect",
        "finished",
        "held",
        "held_data",
        "id",
        "identity",
        "keep_alive",
        "max_out",
        "max_unsent",
        "opened_at",
        "over_quota",
        "peer",
        "reauthenticating",
        "session",
        "unsent",
        "username",
        "v5",
    )

    def __init__(
        self,
        broker: Broker,
        conn_id: int,
        now: float,
        peer: str | None,
        identity: str | None = None,
        address: str | None = None,
    ) -> None:
        super().__init__(None)
        self.broker = broker
        # PUBLISH goes straight to the broker's router: one call less on the
        # hottest path (topic aliases are resolved there).
        self._handlers[_P.PUBLISH] = functools.partial(broker._client_publish, self)
        self.id = conn_id
        self.peer = peer
        #: The username the transport established (a client certificate's
        #: CN), which overrides the CONNECT's; see Broker.open_connection.
        self.identity = identity
        #: Where the connection comes from, for the failure delay.
        self.address = address
        #: The deferred authentication this connection waits for.
        self.auth_job: AuthenticationJob | None = None
        #: While the CONNECT waits for its authentication: the packets that
        #: came with it, then (``held_data``) the bytes that came after.
        self.held: list[Packet] | None = None
        self.held_data: bytearray | None = None
        self.opened_at = now
        self._last_received = now
        # Past max_user_properties / max_user_property_bytes the reader stops
        # building user properties; what it keeps is still past the limit, so
        # _too_many_properties refuses the packet as it would the whole list.
        # A client PUBLISH carries no Subscription Identifier [MQTT-3.3.4-6]:
        # the reader keeps the first and only checks the rest, so
        # _client_publish refuses it as before, after the same earlier checks.
        config = broker.config
        self._reader = PacketReader(
            max_packet_size=config.max_packet_size,
            max_user_properties=config.max_user_properties,
            max_user_property_bytes=config.max_user_property_bytes,
            max_subscription_identifiers=0,
        )
        self.session: Session | None = None
        self.client_id = ""
        self.username: str | None = None
        self.v5 = False
        self.keep_alive = 0
        self.connect: ConnectPacket | None = None
        self.auth_info: ConnectInfo | None = None
        self.reauthenticating = False
        #: The client's Maximum Packet Size, or a number no packet reaches.
        self.max_out = 1 << 30
        #: Whether this connection's end was already handled by the broker.
        self.finished = False
        #: Opened past ``max_connections``: its CONNECT is refused with 0x97.
        self.over_quota = False
        #: Bytes of output not yet written: the adapter's last reported
        #: backlog plus the deliveries not yet taken by data_to_send (bounded
        #: by ``max_unsent_bytes``), and that bound.
        self.unsent = 0
        self.max_unsent = broker.config.max_unsent_bytes
        #: What the adapter last said it has taken but not yet written.
        self.backlog = 0
        #: Topic names this many characters long or shorter are within
        #: ``max_topic_length`` whatever they hold (4 UTF-8 bytes at most each).
        self._topic_chars_ok = broker.config.max_topic_length // 4

    def _accepts_before_start(self) -> bool:
        return True

    def _pause_input(self, remaining: Iterator[Packet]) -> bool:
        held = self.held
        if held is None:
            return False
        # The CONNECT waits for its authentication: what came with it waits too.
        held.extend(remaining)
        return True

    def _hold_data(self, data: bytes, now: float) -> None:
        """Bytes that came while the CONNECT waits for its authentication:
        read once it is accepted, never if it is refused [MQTT-3.1.4-5].
        Up to ``max_packet_size`` of them; more ends the connection (MQTT 5:
        CONNACK 0x97 *Quota exceeded*)."""
        if self.closed:
            return
        if self.held_data is None:
            self.held_data = bytearray(data)
        else:
            self.held_data += data
        if len(self.held_data) > self.broker.config.max_packet_size:
            self.held_data = None
            error = RemoteProtocolError(
                "more than max_packet_size bytes sent while authenticating", _C.QUOTA_EXCEEDED
            )
            self._protocol_error(error, now)
            raise error

    def data_to_send(self, now: float) -> bytes:
        """The output, all of it. Messages held back by the ``max_unsent_bytes``
        high-water mark are sent now, unless the adapter's backlog is still
        above it."""
        data = super().data_to_send(now)
        if self.unsent >= self.max_unsent:
            self.unsent = self.backlog
            session = self.session
            if self.backlog < self.max_unsent and session is not None and session.pending:
                self.broker._pump(session, now)
                more = super().data_to_send(now)
                if more:
                    data += more
        self.unsent = self.backlog
        return data

    def set_backlog(self, nbytes: int, now: float) -> None:
        """The adapter has ``nbytes`` of taken output still to write."""
        held = self.unsent >= self.max_unsent
        self.unsent += nbytes - self.backlog
        self.backlog = nbytes
        session = self.session
        if held and self.unsent < self.max_unsent and session is not None and session.pending:
            # Below the high-water mark again: what waited goes out.
            self.broker._pump(session, now)

    def set_output_limit(self, limit: int, now: float) -> None:
        """Change the connection's high-water mark (``max_unsent_bytes``, or 0
        to hold everything back); what waited goes out if it is now below."""
        held = self.unsent >= self.max_unsent
        self.max_unsent = limit
        session = self.session
        if held and self.unsent < limit and session is not None and session.pending:
            self.broker._pump(session, now)

    # -- goodbyes ---------------------------------------------------------------

    def _goodbye(self, exc: RemoteProtocolError) -> Packet | None:
        if self.state is _S.CONNECTED:
            if self.v5:
                return DisconnectPacket(exc.reason_code, reason_string=str(exc)[:200])
            return None
        # Before CONNACK: answer with a refusing CONNACK where the version
        # is known [MQTT-3.2.2-6 v3.1.1 / 3.2.2-7 v5]; a malformed CONNECT
        # just closes in 3.1.1 [MQTT-3.1.4-1].
        version = self._version
        if isinstance(exc, ConnectRefusal):
            version = exc.protocol_version
            if version is None and exc.reason_code == _C.UNSUPPORTED_PROTOCOL_VERSION:
                # An unknown level: answer as 3.1.1 does, return code 1 [MQTT-3.1.2-2].
                version = ProtocolVersion.MQTT_3_1_1
        if version is None:
            return None
        self._version = version
        if version != _V5 and not isinstance(exc, ConnectRefusal):
            return None
        return ConnAckPacket(False, exc.reason_code)

    def _connection_ended(self, reason_code: ReasonCode, now: float) -> None:
        self.broker._connection_ended(self, now, publish_will=True)

    # -- time ---------------------------------------------------------------------

    def deadline(self) -> float | None:
        """When this connection must be looked at again."""
        state = self.state
        if state is _S.CONNECTED:
            return receive_deadline(self._last_received, self.keep_alive)
        if state is _S.CLOSED:
            return None
        timeout = self.broker.config.connect_timeout
        return None if timeout is None else self.opened_at + timeout

    def handle_timer(self, now: float) -> None:
        """Close a connection silent past its keep-alive or connect timeout."""
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return
        if self.state is _S.CONNECTED and self.v5:
            # [MQTT-3.1.2-22]: 1.5 times the keep-alive without a packet.
            self._send(DisconnectPacket(_C.KEEP_ALIVE_TIMEOUT))
        self.state = transition(self.state, Input.TIMEOUT)
        self.broker._connection_ended(self, now, publish_will=True)

    # -- CONNECT and AUTH ----------------------------------------------------------

    def _on_connect(self, packet: Packet, now: float) -> None:
        assert isinstance(packet, ConnectPacket)
        self.state = transition(self.state, Input.RECV_CONNECT)
        version = packet.protocol_version
        self._version = version
        self.v5 = version == _V5
        self.connect = packet
        broker = self.broker
        config = broker.config
        client_id = packet.client_id
        self.assigned_id: str | None = None
        if not client_id:
            # [MQTT-3.1.3-6]: the server assigns a unique identifier (3.1.1
            # only with a clean session, which the reader checked [MQTT-3.1.3-8]).
            client_id = broker._new_client_id()
            if self.v5:
                self.assigned_id = client_id
        self.client_id = client_id
        identity = self.identity
        username = packet.username if identity is None else identity
        # With a transport identity the CONNECT's password proves nothing
        # more, and is not handed on (mosquitto does the same).
        password = packet.password if identity is None else None
        self.username = username
        if _utf8_length(client_id) > config.max_client_id_length:
            # [MQTT-3.1.3-8] (5.0) / [MQTT-3.1.3-9] (3.1.1): 0x85 / return code 2.
            return self._refuse(_C.CLIENT_IDENTIFIER_NOT_VALID, "client identifier too long")
        if self.over_quota:
            # max_connections: 0x97 (3.x: return code 3, server unavailable).
            return self._refuse(_C.QUOTA_EXCEEDED, "too many connections")
        if self.v5:
            properties = packet.user_properties
            if packet.will is not None:
                properties = properties + packet.will.user_properties
            if properties and self._too_many_properties(properties):
                return self._refuse(_C.QUOTA_EXCEEDED, "too many user properties")
        will = packet.will
        if will is not None:
            if will.qos > config.maximum_qos:
                return self._refuse(_C.QOS_NOT_SUPPORTED, "will QoS exceeds Maximum QoS")
            if will.retain and not config.retain_available:
                return self._refuse(_C.RETAIN_NOT_SUPPORTED, "retained wills are not supported")
            if will.topic.count("/") >= config.max_topic_levels:
                return self._refuse(_C.TOPIC_NAME_INVALID, "will topic too deep")
            if _utf8_length(will.topic) > config.max_topic_length:
                return self._refuse(_C.TOPIC_NAME_INVALID, "will topic too long")
        if packet.authentication_method is not None and not self.v5:
            raise RemoteProtocolError("authentication method outside MQTT 5")
        from .auth import ConnectInfo

        info = self.auth_info = ConnectInfo(
            client_id,
            username,
            password,
            version,
            packet.authentication_method,
            packet.authentication_data,
            username_verified=identity is not None,
        )
        broker._authenticate(
            self, functools.partial(broker.authenticator.authenticate, info), now, connect=True
        )

    # -- the authenticator's answer (now or later; see mqttproto._broker_auth) ---------

    def _wait_for_authentication(self, job: AuthenticationJob | None, *, connect: bool) -> None:
        """The answer comes later: from ``job``, or after a failure delay.

        While a CONNECT (``connect``) waits, nothing more from the client is
        read: if it is refused, nothing is [MQTT-3.1.4-5]. An AUTH that waits
        lets packets be read: only another AUTH (which is a protocol error,
        the client must wait for the answer) or DISCONNECT may come then,
        or, during a re-authentication, any packet (MQTT 5.0 section 4.12.1).
        """
        self.auth_job = job
        if connect and self.held is None:
            self.held = []

    def _authenticated(self, result: Any, now: float) -> None:
        """Act on the authenticator's answer, then read what waited for it."""
        self.auth_job = None
        if self.state is _S.CONNECTED:
            self._reauth_result(result, now)
        else:
            self._auth_result(result, now)
        held = self.held
        if held is None or self.auth_job is not None:
            return
        self.held = None
        data, self.held_data = self.held_data, None
        if self.closed:
            return
        # Only the CONNECT holds input back: what was held cannot wait again.
        self._dispatch(held, now)
        if data and not self.closed:
            self.receive_data(bytes(data), now)

    def _refuse_busy(self, now: float) -> None:
        """Too many authentications pending: 0x89 *Server busy* (3.x: return code 3)."""
        reason = "too many authentications in progress"
        if self.state is _S.CONNECTED:
            from .auth import AuthResult

            self._reauth_result(AuthResult.reject(_C.SERVER_BUSY, reason), now)
        else:
            self._refuse(_C.SERVER_BUSY, reason)

    def _auth_result(self, result: Any, now: float) -> None:
        """Act on an :class:`~mqttproto.auth.AuthResult` during CONNECT."""
        code = ReasonCode(result.reason_code)
        connect = self.connect
        assert connect is not None
        if code == _C.CONTINUE_AUTHENTICATION:
            if connect.authentication_method is None:
                return self._refuse(_C.NOT_AUTHORIZED, "authenticator continued without a method")
            self._send(
                AuthPacket(
                    code,
                    authentication_method=connect.authentication_method,
                    authentication_data=result.authentication_data,
                    reason_string=result.reason_string,
                )
            )
            self.state = transition(self.state, Input.SEND_AUTH)
            return None
        if code != _C.SUCCESS:
            return self._refuse(code, result.reason_string)
        self.broker._accept(self, now, result.authentication_data)
        return None

    def _refuse(self, code: ReasonCode, reason: str | None) -> None:
        """Answer CONNECT with a refusing CONNACK and close [MQTT-3.2.2-6]."""
        v5 = self.v5
        self._send(ConnAckPacket(False, code, reason_string=reason if v5 else None))
        self.state = transition(self.state, Input.SEND_CONNACK_REFUSED)
        self.broker._connection_ended(self, 0.0, publish_will=False)

    def _on_auth(self, packet: Packet, now: float) -> None:
        assert isinstance(packet, AuthPacket)
        connect = self.connect
        assert connect is not None and self.auth_info is not None
        method = connect.authentication_method
        if method is None or packet.authentication_method != method:
            # [MQTT-4.12.0-5]: the same method throughout; no method, no AUTH.
            raise RemoteProtocolError("AUTH with a different or no authentication method")
        if self.auth_job is not None:
            # The client sends AUTH in answer to the server's (MQTT 5.0
            # section 4.12); this one did not wait for it.
            raise RemoteProtocolError("AUTH while the previous one is being answered")
        broker = self.broker
        ask = functools.partial(
            broker.authenticator.continue_authentication,
            self.auth_info,
            packet.authentication_data,
        )
        if self.state is _S.CONNECTING:
            if packet.reason_code != _C.CONTINUE_AUTHENTICATION:
                raise RemoteProtocolError("AUTH during CONNECT must continue authentication")
            self.state = transition(self.state, Input.RECV_AUTH)
            broker._authenticate(self, ask, now, connect=False)
            return
        # Re-authentication [MQTT-4.12.1]: 0x19 starts it, 0x18 continues it.
        if packet.reason_code == _C.RE_AUTHENTICATE and not self.reauthenticating:
            self.reauthenticating = True
        elif not (packet.reason_code == _C.CONTINUE_AUTHENTICATION and self.reauthenticating):
            raise RemoteProtocolError(f"unexpected AUTH {packet.reason_code.name}")
        self.state = transition(self.state, Input.RECV_AUTH)
        broker._authenticate(self, ask, now, connect=False)

    def _reauth_result(self, result: Any, now: float) -> None:
        """Act on the answer to a re-authentication's AUTH."""
        connect = self.connect
        assert connect is not None
        method = connect.authentication_method
        code = ReasonCode(result.reason_code)
        if code >= 0x80:
            # [MQTT-4.12.1-2]: a failed re-authentication ends the connection.
            self._send(DisconnectPacket(code, reason_string=result.reason_string))
            self.state = transition(self.state, Input.SEND_DISCONNECT)
            self.broker._connection_ended(self, now, publish_will=True)
            return
        if code == _C.SUCCESS:
            self.reauthenticating = False
        self._send(
            AuthPacket(
                code,
                authentication_method=method,
                authentication_data=result.authentication_data,
                reason_string=result.reason_string,
            )
        )
        self.state = transition(self.state, Input.SEND_AUTH)

    # -- the rest ------------------------------------------------------------------

    def _too_many_properties(self, properties: tuple[tuple[str, str], ...]) -> bool:
        """Whether user properties pass ``max_user_properties`` / ``max_user_property_bytes``."""
        config = self.broker.config
        if len(properties) > config.max_user_properties:
            return True
        limit = config.max_user_property_bytes
        size = sum(len(name) + len(value) for name, value in properties)
        if size * 4 <= limit:
            return False
        return sum(_utf8_length(name) + _utf8_length(value) for name, value in properties) > limit

    def _on_puback(self, packet: Packet, now: float) -> None:
        assert isinstance(packet, PubAckPacket)
        session = self.session
        assert session is not None
        if session.outbound.on_puback(packet.packet_id) is not None:
            self.broker._flow_done(session, packet.packet_id, now)

    def _on_pubrec(self, packet: Packet, now: float) -> None:
        assert isinstance(packet, PubRecPacket)
        session = self.session
        assert session is not None
        message = session.outbound.on_pubrec(packet.packet_id, packet.reason_code)
        if message is None:
            if self.v5:
                self._send(PubRelPacket(packet.packet_id, _C.PACKET_IDENTIFIER_NOT_FOUND))
            else:
                self._out.append(_ACK(0x62, 2, packet.packet_id))
            return
        if packet.reason_code >= 0x80:
            self.broker._flow_done(session, packet.packet_id, now)
            return
        self._out.append(_ACK(0x62, 2, packet.packet_id))

    def _on_pubcomp(self, packet: Packet, now: float) -> None:
        session = self.session
        assert session is not None
        assert isinstance(packet, PubCompPacket)
        packet_id = packet.packet_id
        if session.outbound.on_pubcomp(packet_id) is not None:
            self.broker._flow_done(session, packet_id, now)

    def _on_pubrel(self, packet: Packet, now: float) -> None:
        assert isinstance(packet, PubRelPacket)
        session = self.session
        assert session is not None
        if session.inbound.release(packet.packet_id):
            self._out.append(_ACK(0x70, 2, packet.packet_id))
        elif self.v5:
            # [MQTT-4.3.3-11]: answer PUBREL even for an unknown identifier.
            self._out.append(_ACK_CODE(0x70, 3, packet.packet_id, _C.PACKET_IDENTIFIER_NOT_FOUND))
        else:
            self._out.append(_ACK(0x70, 2, packet.packet_id))

    def _on_subscribe(self, packet: Packet, now: float) -> None:
        assert isinstance(packet, SubscribePacket)
        self.broker._subscribe(self, packet, now)

    def _on_unsubscribe(self, packet: Packet, now: float) -> None:
        assert isinstance(packet, UnsubscribePacket)
        if packet.user_properties and self._too_many_properties(packet.user_properties):
            # UNSUBACK has no quota code (MQTT 5.0 section 3.11.2.1): the
            # connection ends with DISCONNECT 0x97.
            raise RemoteProtocolError("too many user properties", _C.QUOTA_EXCEEDED)
        self.broker._unsubscribe(self, packet)

    def _on_pingreq(self, packet: Packet, now: float) -> None:
        # [MQTT-3.12.4-1]: the server answers PINGREQ with PINGRESP.
        self._out.append(_PINGRESP)

    def _on_disconnect(self, packet: Packet, now: float) -> None:
        assert isinstance(packet, DisconnectPacket)
        session = self.session
        connect = self.connect
        expiry = packet.session_expiry_interval
        if expiry is not None and session is not None and connect is not None:
            if expiry and not connect.session_expiry_interval:
                # [MQTT-3.14.2-2]: 0 in CONNECT cannot become non-zero.
                raise RemoteProtocolError("session expiry interval raised in DISCONNECT")
            session.expiry_interval = self.broker._grant_expiry(expiry)
        self.state = transition(self.state, Input.RECV_DISCONNECT)
        # [MQTT-3.14.4-3]: a normal DISCONNECT discards the will; 0x04 asks for it.
        self.broker._connection_ended(
            self, now, publish_will=packet.reason_code == _C.DISCONNECT_WITH_WILL_MESSAGE
        )
