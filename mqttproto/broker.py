"""The server role: :class:`BrokerConnection` and the multi-connection :class:`Broker`.

A :class:`Broker` is driven by an adapter that owns the sockets. It never
reads a clock: every call that depends on time takes ``now``::

    broker = Broker(BrokerConfig())
    conn = broker.open_connection(now(), peer="10.0.0.7:51234")
    broker.receive_data(conn, data, now())          # never raises for peer faults
    for conn, data in broker.flush(now()): write(conn, data)
    for conn in broker.connections_to_close(): flush, close, broker.connection_lost(conn, now())
    # and call handle_timer(now()) when get_timer() is reached

Each network connection is a :class:`BrokerConnection` (the shared
:class:`~mqttproto._connection.Connection` engine with the server's state
table and packet handlers); the broker holds sessions, the subscription trie
(:mod:`mqttproto._router`), retained messages (:mod:`mqttproto._retained`),
wills, timers and the :class:`~mqttproto.store.SessionStore`.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import struct
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from ._connection import Connection
from ._keepalive import receive_deadline
from ._qos import MAX_PACKET_ID, OutboundStage
from ._retained import RetainedStore
from ._router import Router, Sub
from ._session import NEVER_EXPIRES, Message, Pending, Session
from ._state import ConnectionState, Input, transition
from .codec import PacketReader
from .config import BrokerConfig
from .enums import PacketType, ProtocolVersion, QoS, ReasonCode, RetainHandling
from .errors import ConnectRefusal, LocalProtocolError, RemoteProtocolError, TopicAliasInvalid
from .packets import (
    AuthPacket,
    ConnAckPacket,
    ConnectPacket,
    DisconnectPacket,
    Packet,
    PubAckPacket,
    PubCompPacket,
    PublishPacket,
    PubRecPacket,
    PubRelPacket,
    SubAckPacket,
    SubscribePacket,
    Subscription,
    UnsubAckPacket,
    UnsubscribePacket,
    Will,
)
from .store import MemoryStore, RetainedMessage, SessionStore, StoredSession
from .topics import parse_shared_subscription, validate_topic_name

if TYPE_CHECKING:
    from .auth import Authenticator, Authorizer, ConnectInfo

__all__ = ["Broker", "BrokerConnection", "SessionInfo"]

_S = ConnectionState
_P = PacketType
_V5 = ProtocolVersion.MQTT_5_0
_C = ReasonCode
_ACK = struct.Struct(">BBH").pack
_ACK_CODE = struct.Struct(">BBHB").pack
_u16 = struct.Struct(">H").pack
_PINGRESP = b"\xd0\x00"

_NO_V5_PROPS: dict[str, Any] = {
    "payload_format_indicator": None,
    "message_expiry_interval": None,
    "response_topic": None,
    "correlation_data": None,
    "user_properties": (),
    "content_type": None,
}

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


@attrs.frozen
class SessionInfo:
    """What :meth:`Broker.sessions` reports about one session."""

    client_id: str
    connected: bool
    protocol_version: ProtocolVersion | None
    username: str | None
    peer: str | None
    session_expiry_interval: int
    subscriptions: int
    inflight: int
    queued: int


class _AllowAll:
    """The defaults: everyone may connect and do anything; no AUTH methods."""

    def authenticate(self, info: ConnectInfo) -> Any:
        from .auth import AllowAll

        return AllowAll().authenticate(info)

    def continue_authentication(self, info: ConnectInfo, data: bytes | None) -> Any:
        from .auth import AllowAll

        return AllowAll().continue_authentication(info, data)


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
        _P.PUBLISH: "_on_publish",
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

    def __init__(self, broker: Broker, conn_id: int, now: float, peer: str | None) -> None:
        super().__init__(None)
        self.broker = broker
        self.id = conn_id
        self.peer = peer
        self.opened_at = now
        self._last_received = now
        self._reader = PacketReader(max_packet_size=broker.config.max_packet_size)
        self.session: Session | None = None
        self.client_id = ""
        self.username: str | None = None
        self.v5 = False
        self.keep_alive = 0
        self.connect: ConnectPacket | None = None
        self.auth_info: ConnectInfo | None = None
        self.reauthenticating = False
        self._aliases_in: dict[int, str] = {}
        #: The client's Maximum Packet Size, or a number no packet reaches.
        self.max_out = 1 << 30
        #: Whether this connection's end was already handled by the broker.
        self.finished = False

    def _accepts_before_start(self) -> bool:
        return True

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
        self.username = packet.username
        will = packet.will
        if will is not None:
            if will.qos > config.maximum_qos:
                return self._refuse(_C.QOS_NOT_SUPPORTED, "will QoS exceeds Maximum QoS")
            if will.retain and not config.retain_available:
                return self._refuse(_C.RETAIN_NOT_SUPPORTED, "retained wills are not supported")
            if will.topic.count("/") >= config.max_topic_levels:
                return self._refuse(_C.TOPIC_NAME_INVALID, "will topic too deep")
        if packet.authentication_method is not None and not self.v5:
            raise RemoteProtocolError("authentication method outside MQTT 5")
        from .auth import ConnectInfo

        self.auth_info = ConnectInfo(
            client_id,
            packet.username,
            packet.password,
            version,
            packet.authentication_method,
            packet.authentication_data,
        )
        self._auth_result(broker.authenticator.authenticate(self.auth_info), now)

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
        authenticator = self.broker.authenticator
        if self.state is _S.CONNECTING:
            if packet.reason_code != _C.CONTINUE_AUTHENTICATION:
                raise RemoteProtocolError("AUTH during CONNECT must continue authentication")
            self.state = transition(self.state, Input.RECV_AUTH)
            result = authenticator.continue_authentication(
                self.auth_info, packet.authentication_data
            )
            self._auth_result(result, now)
            return
        # Re-authentication [MQTT-4.12.1]: 0x19 starts it, 0x18 continues it.
        if packet.reason_code == _C.RE_AUTHENTICATE and not self.reauthenticating:
            self.reauthenticating = True
        elif not (packet.reason_code == _C.CONTINUE_AUTHENTICATION and self.reauthenticating):
            raise RemoteProtocolError(f"unexpected AUTH {packet.reason_code.name}")
        self.state = transition(self.state, Input.RECV_AUTH)
        result = authenticator.continue_authentication(self.auth_info, packet.authentication_data)
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

    def _on_publish(self, packet: Packet, now: float) -> None:
        assert isinstance(packet, PublishPacket)
        if packet.topic_alias is not None:
            packet = self._resolve_alias(packet)
        self.broker._client_publish(self, packet, now)

    def _resolve_alias(self, packet: PublishPacket) -> PublishPacket:
        alias = packet.topic_alias
        assert alias is not None
        maximum = self.broker.config.topic_alias_maximum
        if not 0 < alias <= maximum:
            # [MQTT-3.3.2-9] / [MQTT-3.3.2-10]: 0 or above our Topic Alias Maximum.
            raise TopicAliasInvalid(f"topic alias {alias} outside 1..{maximum}")
        if packet.topic:
            self._aliases_in[alias] = packet.topic
        else:
            topic = self._aliases_in.get(alias)
            if topic is None:
                raise TopicAliasInvalid(f"topic alias {alias} was never defined")
            packet = attrs.evolve(packet, topic=topic)
        return attrs.evolve(packet, topic_alias=None)

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


class Broker:
    """The sans-IO MQTT broker core: many connections, sessions and routing.

    :param config: limits and switches (:class:`~mqttproto.config.BrokerConfig`).
    :param store: where sessions and retained messages are written through;
        a :class:`~mqttproto.store.MemoryStore` by default. Sessions and
        retained messages found in it are resumed.
    :param authenticator: decides who may connect (default: everyone, and no
        enhanced authentication method).
    :param authorizer: decides who may publish, subscribe and receive what
        (default: everything).

    No method raises because of what a client sent: a protocol error queues
    the goodbye and schedules that connection for closing, and nothing else
    changes for the others.
    """

    def __init__(
        self,
        config: BrokerConfig | None = None,
        *,
        store: SessionStore | None = None,
        authenticator: Authenticator | None = None,
        authorizer: Authorizer | None = None,
    ) -> None:
        self.config = config if config is not None else BrokerConfig()
        self.store: SessionStore = store if store is not None else MemoryStore()
        self.authenticator: Any = authenticator if authenticator is not None else _AllowAll()
        #: None when everything is allowed, so the hot path skips the calls.
        self.authorizer: Any = authorizer
        self._conns: dict[int, BrokerConnection] = {}
        self._conn_ids = itertools.count(1)
        self._client_ids = itertools.count(1)
        self._sessions: dict[str, Session] = {}
        self._router = Router(self.config.route_cache_size)
        self._retained = RetainedStore()
        self._dirty: dict[int, None] = {}
        self._closing: dict[int, None] = {}
        self._timers: list[tuple[float, int, str, Any]] = []
        self._timer_seq = itertools.count()
        self._started_at: float | None = None
        self._stored: list[StoredSession] | None = self.store.load_sessions()
        self.messages_received = 0
        self.messages_sent = 0
        for retained in self.store.load_retained():
            self._retained.set(retained.packet.topic, retained)

    # -- the adapter's API ------------------------------------------------------

    def open_connection(self, now: float, *, peer: str | None = None) -> int:
        """A new network connection; returns its id (never reused)."""
        self._tick(now)
        conn_id = next(self._conn_ids)
        conn = BrokerConnection(self, conn_id, now, peer)
        self._conns[conn_id] = conn
        self._watch(conn)
        return conn_id

    def receive_data(self, conn: int, data: bytes, now: float) -> None:
        """Bytes from connection ``conn``. Never raises for the peer's faults:
        the goodbye is queued and the connection is in :meth:`connections_to_close`.
        Unknown or closed connections are ignored."""
        connection = self._conns.get(conn)
        if connection is None:
            return
        self._tick(now)
        self._dirty[conn] = None
        # A peer's fault: the goodbye is queued and _connection_ended
        # scheduled the close; nothing else changes.
        with contextlib.suppress(RemoteProtocolError):
            connection.receive_data(data, now)

    def receive_eof(self, conn: int, now: float) -> None:
        """The client closed its side: the will is published [MQTT-3.1.2-8]."""
        connection = self._conns.get(conn)
        if connection is not None:
            connection.receive_eof(now)

    def connection_lost(self, conn: int, now: float) -> None:
        """The transport is gone; forget the connection (will published if due)."""
        connection = self._conns.pop(conn, None)
        self._dirty.pop(conn, None)
        self._closing.pop(conn, None)
        if connection is None:
            return
        if not connection.finished:
            if connection.state is not _S.CLOSED:
                connection.state = transition(connection.state, Input.RECV_EOF)
            self._connection_ended(connection, now, publish_will=True)

    def data_to_send(self, conn: int, now: float) -> bytes:
        """The bytes to write to ``conn`` now."""
        connection = self._conns.get(conn)
        self._dirty.pop(conn, None)
        if connection is None:
            return b""
        return connection.data_to_send(now)

    def flush(self, now: float) -> list[tuple[int, bytes]]:
        """Pending output of every connection that has any."""
        out = []
        conns = self._conns
        for conn_id in self._dirty:
            connection = conns.get(conn_id)
            if connection is not None:
                data = connection.data_to_send(now)
                if data:
                    out.append((conn_id, data))
        self._dirty.clear()
        return out

    def connections_to_close(self) -> list[int]:
        """Connections to close (drained): flush their data, close, then call
        :meth:`connection_lost`."""
        closing = list(self._closing)
        self._closing.clear()
        return closing

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next be called; None: no timer."""
        timers = self._timers
        return timers[0][0] if timers else None

    def handle_timer(self, now: float) -> None:
        """Keep-alive and connect timeouts, will delays, session expiry, ``$SYS``."""
        self._tick(now)
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, kind, key = heapq.heappop(timers)
            if kind == "conn":
                conn = self._conns.get(key)
                if conn is None or conn.finished:
                    continue
                conn.handle_timer(now)
                if conn.closed:
                    self._dirty[key] = None
                else:
                    self._watch(conn)
            elif kind == "will":
                session = self._sessions.get(key)
                if session is not None and session.will_due is not None and session.will_due <= now:
                    self._publish_will(session, now)
            elif kind == "session":
                session = self._sessions.get(key)
                if (
                    session is not None
                    and session.connection is None
                    and session.expires_at is not None
                    and session.expires_at <= now
                ):
                    self._end_session(session, now)
            elif kind == "sys":
                self._publish_sys(now)
                interval = self.config.sys_interval
                assert interval is not None
                self._push_timer(now + interval, "sys", None)

    def shutdown(self, now: float) -> None:
        """Say goodbye to everyone: v5 clients get DISCONNECT 0x8B."""
        for conn in list(self._conns.values()):
            if conn.finished:
                continue
            if conn.state is _S.CONNECTED and conn.v5:
                conn._send(DisconnectPacket(_C.SERVER_SHUTTING_DOWN))
            if conn.state is not _S.CLOSED:
                conn.state = transition(
                    conn.state,
                    Input.SEND_DISCONNECT if conn.state is _S.CONNECTED else Input.TIMEOUT,
                )
            self._dirty[conn.id] = None
            # A server shutting down is not the client's fault: no will
            # unless the client reconnects elsewhere; persistent sessions stay.
            self._connection_ended(conn, now, publish_will=False)

    # -- server-side publishing and introspection ---------------------------------

    def publish(
        self,
        topic: str,
        payload: bytes | str = b"",
        *,
        qos: QoS | int = 0,
        retain: bool = False,
        now: float,
        **properties: Any,
    ) -> int:
        """Publish a message from the broker itself; returns how many sessions it reached.

        ``properties`` are MQTT 5 PUBLISH properties (``message_expiry_interval``,
        ``user_properties``, ``content_type``, ...).

        :raises LocalProtocolError: an invalid topic name or QoS.
        """
        validate_topic_name(topic)
        if qos not in (0, 1, 2):
            raise LocalProtocolError(f"QoS must be 0, 1 or 2, not {qos!r}")
        if isinstance(payload, str):
            payload = payload.encode()
        self._tick(now)
        packet = PublishPacket(topic, payload, QoS(qos), retain, **properties)
        message = Message(packet, now, None)
        if retain:
            self._retain(message)
        return self._route(message, now)[0]

    def subscribers(self, topic: str) -> list[tuple[str, QoS]]:
        """The client ids (and granted QoS) a publish to ``topic`` would reach now."""
        route = self._router.route(topic)
        found = [(t.session.client_id, QoS(t.qos)) for t in route.targets]
        for group, members in route.groups:
            cursor = self._router._cursors.get(group, 0)
            sub = members[cursor % len(members)]
            found.append((sub.session.client_id, QoS(sub.qos)))
        return found

    def sessions(self) -> list[SessionInfo]:
        return [
            SessionInfo(
                s.client_id,
                s.connection is not None,
                s.connection.version if s.connection is not None else None,
                s.username,
                s.connection.peer if s.connection is not None else None,
                s.expiry_interval,
                len(s.subscriptions),
                len(s.outbound.inflight),
                len(s.pending),
            )
            for s in self._sessions.values()
        ]

    def subscriptions(self, client_id: str) -> list[Subscription]:
        session = self._sessions.get(client_id)
        if session is None:
            return []
        return [
            Subscription(
                full_filter,
                QoS(sub.qos),
                sub.no_local,
                sub.retain_as_published,
                RetainHandling(sub.retain_handling),
            )
            for full_filter, sub in session.subscriptions.items()
        ]

    def retained(self, topic_filter: str) -> list[RetainedMessage]:
        """The retained messages ``topic_filter`` matches (expired ones left out)."""
        return [m for m in self._retained.match(topic_filter) if m.expires_at is None]

    def retained_at(self, topic_filter: str, now: float) -> list[RetainedMessage]:
        """:meth:`retained`, leaving out those expired at ``now``."""
        return [
            m
            for m in self._retained.match(topic_filter)
            if m.expires_at is None or m.expires_at > now
        ]

    # -- internals: bookkeeping ------------------------------------------------------

    def _tick(self, now: float) -> None:
        if self._started_at is None:
            self._started_at = now
            if self.config.sys_interval is not None:
                self._push_timer(now, "sys", None)
        if self._stored is not None:
            stored, self._stored = self._stored, None
            for record in stored:
                self._restore(record, now)

    def _push_timer(self, when: float, kind: str, key: Any) -> None:
        heapq.heappush(self._timers, (when, next(self._timer_seq), kind, key))

    def _watch(self, conn: BrokerConnection) -> None:
        deadline = conn.deadline()
        if deadline is not None:
            self._push_timer(deadline, "conn", conn.id)

    def _new_client_id(self) -> str:
        while True:
            client_id = f"auto-{next(self._client_ids)}"
            if client_id not in self._sessions:
                return client_id

    def _grant_expiry(self, requested: int) -> int:
        limit = self.config.max_session_expiry_interval
        return requested if limit is None else min(requested, limit)

    # -- internals: connections and sessions -------------------------------------------

    def _accept(self, conn: BrokerConnection, now: float, auth_data: bytes | None) -> None:
        """CONNECT accepted: take over or create the session, send CONNACK, resume."""
        connect = conn.connect
        assert connect is not None
        config = self.config
        client_id = conn.client_id
        if conn.v5:
            requested = connect.session_expiry_interval or 0
        else:
            # 3.1/3.1.1: a clean session lasts as long as the connection; a
            # persistent one until the server's limit, if any [MQTT-3.1.2-4].
            requested = 0 if connect.clean_start else NEVER_EXPIRES
        expiry = self._grant_expiry(requested)
        session = self._sessions.get(client_id)
        if session is not None and session.connection is not None:
            self._take_over(session.connection, now)
        if session is not None and session.will is not None:
            # The client is back before its will delay ran out: no will
            # (MQTT 5.0 section 3.1.2.5).
            session.will = None
            session.will_due = None
        session_present = False
        if session is not None and connect.clean_start:
            # [MQTT-3.1.2-4]: a clean start discards any existing session.
            self._discard_session(session)
            session = None
        if session is None:
            session = Session(
                client_id,
                receive_maximum=config.receive_maximum,
                max_queued=config.max_queued_messages,
            )
            self._sessions[client_id] = session
        else:
            session_present = True  # [MQTT-3.2.2-2]
        session.expiry_interval = expiry
        session.expires_at = None
        session.username = conn.username
        session.connection = conn
        conn.session = session
        keep_alive = connect.keep_alive
        if conn.v5 and config.server_keep_alive is not None:
            keep_alive = config.server_keep_alive  # [MQTT-3.2.2-21]
        conn.keep_alive = keep_alive
        outbound = session.outbound
        if conn.v5:
            conn.max_out = connect.maximum_packet_size or conn.max_out
            conn._peer_max_packet_size = connect.maximum_packet_size
            quota = connect.receive_maximum or MAX_PACKET_ID
        else:
            quota = MAX_PACKET_ID
        outbound.send_quota = min(quota, config.max_inflight_messages)
        ack = ConnAckPacket(session_present, _C.SUCCESS)
        if conn.v5:
            ack = ConnAckPacket(
                session_present,
                _C.SUCCESS,
                session_expiry_interval=expiry if expiry != requested else None,
                receive_maximum=config.receive_maximum if config.receive_maximum != 65535 else None,
                maximum_qos=QoS(config.maximum_qos) if config.maximum_qos < 2 else None,
                retain_available=False if not config.retain_available else None,
                maximum_packet_size=config.max_packet_size,
                assigned_client_identifier=conn.assigned_id,
                topic_alias_maximum=config.topic_alias_maximum or None,
                wildcard_subscription_available=(
                    False if not config.wildcard_subscription_available else None
                ),
                subscription_identifiers_available=(
                    False if not config.subscription_identifiers_available else None
                ),
                shared_subscription_available=(
                    False if not config.shared_subscription_available else None
                ),
                server_keep_alive=config.server_keep_alive,
                authentication_method=connect.authentication_method,
                authentication_data=auth_data,
            )
        conn._send(ack)
        conn.state = transition(conn.state, Input.SEND_CONNACK)
        self._watch(conn)
        if session.persistent:
            self.store.save_session(session.snapshot())
        # [MQTT-4.4.0-1]: resend unacknowledged PUBLISH (DUP) and PUBREL.
        for packet in outbound.resend():
            if isinstance(packet, PublishPacket) and not conn.v5:
                packet = attrs.evolve(packet, subscription_identifiers=(), **_NO_V5_PROPS)
            try:
                conn._send(packet)
            except LocalProtocolError:
                # Too large for the client now: the flow ends [MQTT-3.1.2-25].
                assert packet.packet_id is not None
                outbound.inflight.pop(packet.packet_id, None)
                session.packet_ids.release(packet.packet_id)
        self._pump(session, now)

    def _take_over(self, old: BrokerConnection, now: float) -> None:
        """A new connection claims the client id: the old one goes [MQTT-3.1.4-3]."""
        if old.v5:
            old._send(DisconnectPacket(_C.SESSION_TAKEN_OVER))
        if old.state is not _S.CLOSED:
            old.state = transition(old.state, Input.SEND_DISCONNECT)
        self._dirty[old.id] = None
        session = old.session
        old.finished = True
        old.session = None
        self._closing[old.id] = None
        connect = old.connect
        if session is None or connect is None:
            return
        session.connection = None
        will = connect.will
        if will is not None and not will.will_delay_interval:
            # The old connection did not end with DISCONNECT: its will goes,
            # unless a will delay covers the reconnection that just happened.
            self._send_will(will, session.client_id, now)

    def _connection_ended(self, conn: BrokerConnection, now: float, *, publish_will: bool) -> None:
        """The network connection is over (any reason): will, session, close."""
        if conn.finished:
            return
        conn.finished = True
        self._closing[conn.id] = None
        self._dirty[conn.id] = None
        session = conn.session
        conn.session = None
        if session is None:
            return
        session.connection = None
        connect = conn.connect
        will = connect.will if connect is not None else None
        if will is not None and publish_will:
            delay = min(will.will_delay_interval or 0, session.expiry_interval)
            if delay:
                session.will = will
                session.will_due = now + delay
                self._push_timer(session.will_due, "will", session.client_id)
            else:
                self._send_will(will, session.client_id, now)
        if not session.persistent:
            self._end_session(session, now)
            return
        if session.expiry_interval != NEVER_EXPIRES:
            session.expires_at = now + session.expiry_interval
            self._push_timer(session.expires_at, "session", session.client_id)
        self.store.save_session(session.snapshot())

    def _publish_will(self, session: Session, now: float) -> None:
        will = session.will
        session.will = None
        session.will_due = None
        if will is not None:
            self._send_will(will, session.client_id, now)

    def _send_will(self, will: Will, client_id: str, now: float) -> None:
        authorizer = self.authorizer
        session = self._sessions.get(client_id)
        username = session.username if session is not None else None
        if authorizer is not None and not authorizer.may_publish(client_id, username, will.topic):
            return
        packet = PublishPacket(
            will.topic,
            will.payload,
            will.qos,
            will.retain,
            payload_format_indicator=will.payload_format_indicator,
            message_expiry_interval=will.message_expiry_interval,
            content_type=will.content_type,
            response_topic=will.response_topic,
            correlation_data=will.correlation_data,
            user_properties=will.user_properties,
        )
        message = Message(packet, now, client_id)
        if will.retain:
            self._retain(message)
        self._route(message, now)

    def _end_session(self, session: Session, now: float) -> None:
        """The session is over: its pending will goes first (MQTT 5.0 section 3.1.2.5)."""
        if session.will is not None:
            self._publish_will(session, now)
        self._discard_session(session)
        if self._sessions.get(session.client_id) is session:
            del self._sessions[session.client_id]

    def _discard_session(self, session: Session) -> None:
        router = self._router
        for sub in session.subscriptions.values():
            router.remove(sub)
        session.subscriptions.clear()
        session.outbound.discard()
        session.packet_ids.clear()
        session.inbound.discard()
        session.pending.clear()
        self.store.delete_session(session.client_id)

    def _restore(self, record: StoredSession, now: float) -> None:
        """A session from the store, as it was when the broker stopped."""
        config = self.config
        session = Session(
            record.client_id,
            receive_maximum=config.receive_maximum,
            max_queued=config.max_queued_messages,
        )
        session.expiry_interval = record.session_expiry_interval
        if session.expiry_interval != NEVER_EXPIRES:
            session.expires_at = now + session.expiry_interval
            self._push_timer(session.expires_at, "session", session.client_id)
        for stored in record.subscriptions:
            self._add_subscription(
                session,
                Subscription(
                    stored.topic_filter,
                    stored.qos,
                    stored.no_local,
                    stored.retain_as_published,
                    stored.retain_handling,
                ),
                stored.subscription_identifier,
            )
        for message in record.inflight:
            packet = message.packet
            assert message.packet_id is not None
            session.outbound.start(attrs.evolve(packet, packet_id=message.packet_id))
            if message.released:
                session.outbound.inflight[message.packet_id].stage = OutboundStage.RELEASED
            session.packet_ids.reserve(message.packet_id)
        for message in record.queued:
            p = message.packet
            session.pending.append(
                (Message.from_stored(message, now), p.qos, p.retain, p.subscription_identifiers)
            )
        session.inbound.awaiting_release.update(record.awaiting_release)
        if record.will is not None:
            session.will = record.will
            session.will_due = now + (record.will.will_delay_interval or 0)
            self._push_timer(session.will_due, "will", session.client_id)
        self._sessions[session.client_id] = session

    # -- internals: publishing ------------------------------------------------------------

    def _client_publish(self, conn: BrokerConnection, packet: PublishPacket, now: float) -> None:
        """A PUBLISH from a client: check, acknowledge, retain and route it."""
        config = self.config
        qos = packet.qos
        if qos > config.maximum_qos:
            # [MQTT-3.2.2-12]: QoS above Maximum QoS is answered with 0x9B.
            raise RemoteProtocolError(f"QoS {int(qos)} above Maximum QoS", _C.QOS_NOT_SUPPORTED)
        if packet.retain and not config.retain_available:
            # [MQTT-3.2.2-15]: retain when Retain Available is 0 gets 0x9A.
            raise RemoteProtocolError(
                "retained messages are not supported", _C.RETAIN_NOT_SUPPORTED
            )
        topic = packet.topic
        if topic.count("/") >= config.max_topic_levels:
            raise RemoteProtocolError("topic has too many levels", _C.TOPIC_NAME_INVALID)
        session = conn.session
        assert session is not None
        packet_id = packet.packet_id
        inbound = session.inbound
        if qos == 2 and packet_id in inbound.awaiting_release:
            # A retransmission: acknowledge again, deliver once [MQTT-4.3.3-10].
            conn._out.append(_ACK(0x50, 2, packet_id))
            return
        if qos and conn.v5:
            # [MQTT-3.3.4-9]: more than our Receive Maximum unacknowledged: 0x93.
            inbound.check_quota(True)
        self.messages_received += 1
        authorizer = self.authorizer
        allowed = not topic.startswith("$SYS") and (
            authorizer is None or authorizer.may_publish(conn.client_id, conn.username, topic)
        )
        code = _C.SUCCESS
        if not allowed:
            # 3.1.1 has no way to say no: acknowledged and dropped.
            code = _C.NOT_AUTHORIZED if conn.v5 else _C.SUCCESS
        else:
            message = Message(packet, now, conn.client_id)
            if packet.retain:
                self._retain(message)
            reached, refused = self._route(message, now)
            if not reached and conn.v5:
                code = _C.QUOTA_EXCEEDED if refused else _C.NO_MATCHING_SUBSCRIBERS
        if not qos:
            return
        first = 0x40 if qos == 1 else 0x50
        if code:
            conn._out.append(_ACK_CODE(first, 3, packet_id, code))
        else:
            conn._out.append(_ACK(first, 2, packet_id))
        if qos == 2 and code < 0x80:
            assert packet_id is not None
            inbound.received_qos2(packet_id)

    def _retain(self, message: Message) -> None:
        """Store, replace or delete the retained message of a topic [MQTT-3.3.1-5/6]."""
        packet = message.packet
        topic = packet.topic
        if not packet.payload:
            if self._retained.delete(topic):
                self.store.set_retained(topic, None)
            return
        retained = RetainedMessage(
            message.packet_for(True, packet.qos, True, (), None), message.expires_at
        )
        self._retained.set(topic, retained)
        self.store.set_retained(topic, retained)

    def _route(self, message: Message, now: float) -> tuple[int, int]:
        """Deliver to every matching session; (reached, refused for quota)."""
        route = self._router.route(message.packet.topic)
        if not route:
            return 0, 0
        reached = refused = 0
        origin = message.origin
        qos = message.packet.qos
        retain = message.packet.retain
        deliver = self._deliver
        authorizer = self.authorizer
        topic = message.packet.topic
        for target in route.targets:
            session = target.session
            if session.client_id == origin:
                if not target.has_local:
                    continue  # [MQTT-3.8.3-3] No Local
                granted, rap, sub_ids = target.local_qos, target.local_rap, target.local_sub_ids
            else:
                granted, rap, sub_ids = target.qos, target.rap, target.sub_ids
            if authorizer is not None and not authorizer.may_receive(
                session.client_id, session.username, topic
            ):
                continue
            # [MQTT-3.8.4-8]: the granted QoS caps the delivery QoS;
            # [MQTT-3.3.1-12]: without Retain As Published the flag is cleared.
            if deliver(
                session, message, granted if granted < qos else qos, retain and rap, sub_ids, now
            ):
                reached += 1
            else:
                refused += 1
        for group, members in route.groups:
            sub = self._router.pick(group, members)
            session = sub.session
            if authorizer is not None and not authorizer.may_receive(
                session.client_id, session.username, topic
            ):
                continue
            sub_ids = () if sub.sub_id is None else (sub.sub_id,)
            granted = sub.qos if sub.qos < qos else qos
            if deliver(session, message, granted, retain and sub.retain_as_published, sub_ids, now):
                reached += 1
            else:
                refused += 1
        return reached, refused

    def _deliver(
        self,
        session: Session,
        message: Message,
        qos: int,
        retain: bool,
        sub_ids: tuple[int, ...],
        now: float,
    ) -> bool:
        """Send (or queue) one message to one session; False: refused, queue full."""
        conn = session.connection
        if conn is None:
            if not qos and not self.config.queue_qos0_offline:
                return True
            if not self._enqueue(session, (message, qos, retain, sub_ids)):
                return False
            if session.persistent:
                from .store import StoredMessage

                self.store.append_queued(
                    session.client_id,
                    StoredMessage(
                        message.packet_for(True, qos, retain, sub_ids, None), message.expires_at
                    ),
                )
            return True
        v5 = conn.v5
        if not v5 and sub_ids:
            sub_ids = ()
        if not qos:
            head, _ = message.wire(v5, 0, retain, sub_ids, now)
            if len(head) <= conn.max_out:
                # [MQTT-3.1.2-25]: a message too large for the client is dropped.
                conn._out.append(head)
                self._dirty[conn.id] = None
                self.messages_sent += 1
            return True
        outbound = session.outbound
        if session.pending or len(outbound.inflight) >= outbound.send_quota:
            return self._enqueue(session, (message, qos, retain, sub_ids))
        self._send_qos(session, conn, message, qos, retain, sub_ids, now)
        return True

    def _send_qos(
        self,
        session: Session,
        conn: BrokerConnection,
        message: Message,
        qos: int,
        retain: bool,
        sub_ids: tuple[int, ...],
        now: float,
    ) -> None:
        v5 = conn.v5
        head, tail = message.wire(v5, qos, retain, sub_ids, now)
        if len(head) + 2 + len(tail) > conn.max_out:
            return  # [MQTT-3.1.2-25]
        packet_id = session.packet_ids.allocate()
        out = conn._out
        out.append(head)
        out.append(_u16(packet_id))
        out.append(tail)
        session.outbound.start(message.packet_for(v5, qos, retain, sub_ids, packet_id))
        self._dirty[conn.id] = None
        self.messages_sent += 1

    def _enqueue(self, session: Session, item: Pending) -> bool:
        """Queue for later, bounded: drop the oldest QoS 0 message to make
        room, else refuse the new message (the publisher hears 0x97 in v5)."""
        pending = session.pending
        if len(pending) >= self.config.max_queued_messages:
            for index, queued in enumerate(pending):
                if queued[1] == 0:
                    del pending[index]
                    break
            else:
                # A new QoS 0 message is dropped (at most once); QoS 1/2 refused.
                return item[1] == 0
        pending.append(item)
        return True

    def _pump(self, session: Session, now: float) -> None:
        """Send queued messages while the client's window has room."""
        conn = session.connection
        if conn is None or conn.state is not _S.CONNECTED:
            return
        pending = session.pending
        outbound = session.outbound
        while pending:
            message, qos, retain, sub_ids = pending[0]
            if qos and len(outbound.inflight) >= outbound.send_quota:
                return
            pending.popleft()
            if message.expired(now):
                continue  # [MQTT-3.3.2-5]: expired messages are not delivered
            if not conn.v5:
                sub_ids = ()
            if qos:
                self._send_qos(session, conn, message, qos, retain, sub_ids, now)
            else:
                head, _ = message.wire(conn.v5, 0, retain, sub_ids, now)
                if len(head) <= conn.max_out:
                    conn._out.append(head)
                    self.messages_sent += 1
        self._dirty[conn.id] = None

    def _flow_done(self, session: Session, packet_id: int, now: float) -> None:
        session.packet_ids.release(packet_id)
        if session.pending:
            self._pump(session, now)

    # -- internals: subscriptions -------------------------------------------------------

    def _subscribe(self, conn: BrokerConnection, packet: SubscribePacket, now: float) -> None:
        """SUBSCRIBE: one reason code per filter [MQTT-3.8.4-6], then retained messages."""
        session = conn.session
        assert session is not None
        config = self.config
        authorizer = self.authorizer
        sub_id = packet.subscription_identifier
        codes: list[ReasonCode] = []
        retained_due: list[tuple[Sub, bool]] = []
        changed = False
        for request in packet.subscriptions:
            full_filter = request.topic_filter
            try:
                shared = parse_shared_subscription(
                    full_filter, error=RemoteProtocolError, max_levels=config.max_topic_levels
                )
            except RemoteProtocolError:
                codes.append(_C.TOPIC_FILTER_INVALID)
                continue
            inner = shared.topic_filter if shared is not None else full_filter
            if shared is not None and request.no_local:
                # [MQTT-3.8.3-4]: No Local on a shared subscription.
                raise RemoteProtocolError("No Local on a shared subscription")
            if inner.count("/") >= config.max_topic_levels:
                codes.append(_C.TOPIC_FILTER_INVALID)
            elif shared is not None and not config.shared_subscription_available:
                codes.append(_C.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED)
            elif not config.wildcard_subscription_available and ("+" in inner or "#" in inner):
                codes.append(_C.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED)
            elif sub_id is not None and not config.subscription_identifiers_available:
                codes.append(_C.SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED)
            elif (
                full_filter not in session.subscriptions
                and len(session.subscriptions) >= config.max_subscriptions_per_session
            ):
                codes.append(_C.QUOTA_EXCEEDED)
            elif authorizer is not None and not authorizer.may_subscribe(
                conn.client_id, conn.username, full_filter
            ):
                codes.append(_C.NOT_AUTHORIZED)
            else:
                sub, is_new = self._add_subscription(session, request, sub_id)
                changed = True
                # [MQTT-3.8.4-8]: the granted QoS may be lower than requested.
                codes.append(ReasonCode(sub.qos))
                handling = sub.retain_handling
                # Retained messages are not sent to shared subscriptions
                # (MQTT 5.0 section 4.8.2); Retain Handling 1 only for a new one.
                if shared is None and (handling == 0 or (handling == 1 and is_new)):
                    retained_due.append((sub, True))
        if conn.v5:
            conn._send(SubAckPacket(packet.packet_id, codes))
        else:
            conn._send(
                SubAckPacket(packet.packet_id, [ReasonCode(c.to_suback_v3()) for c in codes])
            )
        if changed and session.persistent:
            self.store.save_session(session.snapshot())
        for sub, _ in retained_due:
            self._send_retained(session, sub, now)

    def _add_subscription(
        self, session: Session, request: Subscription, sub_id: int | None
    ) -> tuple[Sub, bool]:
        full_filter = request.topic_filter
        shared = parse_shared_subscription(full_filter)
        granted = min(int(request.max_qos), self.config.maximum_qos)
        sub = Sub(
            session,
            shared.topic_filter if shared is not None else full_filter,
            granted,
            no_local=request.no_local,
            retain_as_published=request.retain_as_published,
            retain_handling=int(request.retain_handling),
            sub_id=sub_id,
            group=shared.group if shared is not None else None,
        )
        old = session.subscriptions.get(full_filter)
        # [MQTT-3.8.4-3]: a repeated filter replaces the subscription.
        session.subscriptions[full_filter] = sub
        self._router.add(sub)
        return sub, old is None

    def _send_retained(self, session: Session, sub: Sub, now: float) -> None:
        """Retained messages for a new subscription, retain flag set [MQTT-3.3.1-9]."""
        authorizer = self.authorizer
        sub_ids = () if sub.sub_id is None else (sub.sub_id,)
        for retained in self._retained.match(sub.topic_filter):
            if retained.expires_at is not None and now >= retained.expires_at:
                continue
            packet = retained.packet
            if authorizer is not None and not authorizer.may_receive(
                session.client_id, session.username, packet.topic
            ):
                continue
            message = Message(packet, now, None)
            if retained.expires_at is not None:
                message.expires_at = retained.expires_at
                assert message.expiry is not None
                message.received_at = retained.expires_at - message.expiry
            qos = min(int(packet.qos), sub.qos)
            self._deliver(session, message, qos, True, sub_ids, now)

    def _unsubscribe(self, conn: BrokerConnection, packet: UnsubscribePacket) -> None:
        session = conn.session
        assert session is not None
        codes = []
        for full_filter in packet.topic_filters:
            sub = session.subscriptions.pop(full_filter, None)
            if sub is None:
                codes.append(_C.NO_SUBSCRIPTION_EXISTED)
            else:
                self._router.remove(sub)
                codes.append(_C.SUCCESS)
        # [MQTT-3.10.4-4]: UNSUBACK even when nothing was removed.
        conn._send(UnsubAckPacket(packet.packet_id, codes if conn.v5 else ()))
        if session.persistent:
            self.store.save_session(session.snapshot())

    # -- $SYS --------------------------------------------------------------------------

    def _publish_sys(self, now: float) -> None:
        """``$SYS/broker/...`` statistics, retained, so a new subscriber sees them."""
        assert self._started_at is not None
        connected = sum(1 for s in self._sessions.values() if s.connection is not None)
        stats = {
            "$SYS/broker/clients/connected": connected,
            "$SYS/broker/clients/total": len(self._sessions),
            "$SYS/broker/messages/received": self.messages_received,
            "$SYS/broker/messages/sent": self.messages_sent,
            "$SYS/broker/subscriptions/count": len(self._router),
            "$SYS/broker/retained messages/count": len(self._retained),
            "$SYS/broker/uptime": int(now - self._started_at),
        }
        for topic, value in stats.items():
            message = Message(PublishPacket(topic, str(value).encode(), retain=True), now, None)
            self._retain(message)
            self._route(message, now)
