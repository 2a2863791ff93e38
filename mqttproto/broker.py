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
from typing import TYPE_CHECKING, Any

import attrs

from ._broker_auth import Authentication, AuthenticationJob, FailedAuthentication
from ._broker_connection import BrokerConnection
from ._broker_routing import Routing
from ._qos import MAX_PACKET_ID, OutboundStage
from ._retained import RetainedStore
from ._router import Router
from ._session import NEVER_EXPIRES, Message, Session
from ._state import ConnectionState, Input, transition
from .codec import encode_packet
from .config import BrokerConfig
from .enums import PacketType, ProtocolVersion, QoS, ReasonCode, RetainHandling
from .errors import LocalProtocolError, RemoteProtocolError
from .packets import (
    ConnAckPacket,
    DisconnectPacket,
    PublishPacket,
    Subscription,
    Will,
)
from .store import MemoryStore, RetainedMessage, SessionStore, StoredSession
from .topics import validate_topic_name

if TYPE_CHECKING:
    from .auth import Authenticator, Authorizer, ConnectInfo

__all__ = [
    "AuthenticationJob",
    "Broker",
    "BrokerConnection",
    "FailedAuthentication",
    "SessionInfo",
]

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


class Broker(Routing, Authentication):
    """The sans-IO MQTT broker core: many connections, sessions and routing.

    :param config: limits and switches (:class:`~mqttproto.config.BrokerConfig`).
    :param store: where sessions and retained messages are written through;
        a :class:`~mqttproto.store.MemoryStore` by default. Sessions and
        retained messages found in it are resumed.
    :param authenticator: decides who may connect (default: everyone, and no
        enhanced authentication method). An answer it defers (a
        :class:`~mqttproto.auth.DeferredAuthResult`) is computed at once,
        unless the driver runs such jobs itself: see
        :meth:`authentication_jobs`.
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
        #: Deliveries dropped or refused by a bound (see ``memory_limit``).
        self.messages_dropped = 0
        self._held_bytes = 0
        self._backlog_total = 0
        #: Connections held back while ``memory_limit`` is exceeded.
        self._throttled: dict[int, None] = {}
        self._setup_authentication()
        for retained in self.store.load_retained():
            self._retained.set(retained.packet.topic, retained)

    # -- the adapter's API ------------------------------------------------------

    def open_connection(
        self,
        now: float,
        *,
        peer: str | None = None,
        username: str | None = None,
        address: str | None = None,
    ) -> int:
        """A new network connection; returns its id (never reused).

        :param peer: how to name the peer in :meth:`sessions` (an address).
        :param address: the host the connection comes from (an IP address,
            without the port), which its failed authentications count against
            (``auth_failure_delay`` of :class:`~mqttproto.config.BrokerConfig`).
            Connections without one are not delayed.
        :param username: an identity the transport has already established,
            e.g. the subject CN of a verified TLS client certificate (like
            mosquitto's ``use_identity_as_username``). It replaces the User
            Name of the CONNECT for authentication, authorization and the
            session; the CONNECT's Password is dropped, and the authenticator
            sees :attr:`ConnectInfo.username_verified <mqttproto.auth.ConnectInfo>`
            set. ``None``: the username is the CONNECT's.
        """
        self._tick(now)
        conn_id = next(self._conn_ids)
        conn = BrokerConnection(self, conn_id, now, peer, username, address)
        limit = self.config.max_connections
        if limit is not None and len(self._conns) >= limit:
            # Answered when its CONNECT arrives, so the client hears why
            # (CONNACK 0x97 / 3.x return code 3); connect_timeout bounds the wait.
            conn.over_quota = True
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
            if connection.held is None:
                connection.receive_data(data, now)
            else:
                # Its CONNECT waits for authentication: so does this [MQTT-3.1.4-5].
                connection._hold_data(data, now)

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
        self._throttled.pop(conn, None)
        if connection is None:
            return
        self._backlog_total -= connection.backlog
        connection.backlog = 0
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

    def output_backlog(self, conn: int, nbytes: int, now: float) -> None:
        """Tell the broker that ``nbytes`` of what it gave for ``conn`` are
        not yet written (an adapter's transport buffer, after a write or
        when it drains).

        The ``max_unsent_bytes`` high-water mark then counts that backlog:
        while it is above the mark, QoS 0 messages for the connection are
        dropped and QoS 1/2 ones wait in its session queue (bounded by
        ``max_queued_messages``), so a client that reads slowly holds no
        more than that and stays connected; when a smaller backlog is
        reported, what waited is sent (see :meth:`flush`). An adapter that
        never calls this is assumed to write everything it takes.
        """
        if nbytes < 0:
            raise ValueError("nbytes must not be negative")
        connection = self._conns.get(conn)
        if connection is None or connection.backlog == nbytes:
            return
        self._tick(now)
        self._backlog_total += nbytes - connection.backlog
        connection.set_backlog(nbytes, now)
        limit = self.config.memory_limit
        if limit is None:
            return
        if self._held_bytes + self._backlog_total > limit:
            if nbytes and conn not in self._throttled:
                # Over the broker-wide budget: a reader that is behind gets
                # nothing more (QoS 0 dropped, QoS 1/2 queued) until it is below.
                self._throttled[conn] = None
                connection.set_output_limit(0, now)
        elif self._throttled:
            throttled = list(self._throttled)
            self._throttled.clear()
            for conn_id in throttled:
                held = self._conns.get(conn_id)
                if held is not None:
                    held.set_output_limit(self.config.max_unsent_bytes, now)

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
            elif kind == "auth":
                self._authentication_timer(key, now)
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
            # The operator's own message: not held to the retained limits.
            self._retain(message, limited=False)
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

    @property
    def connection_count(self) -> int:
        """Connections opened and not yet lost: what ``max_connections`` counts
        (the servers add their pending TLS handshakes to it)."""
        return len(self._conns)

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
        timers = self._timers
        heapq.heappush(timers, (when, next(self._timer_seq), kind, key))
        if len(timers) > 2 * (len(self._conns) + 2 * len(self._sessions)) + 256:
            self._compact_timers()

    def _compact_timers(self) -> None:
        """Drop timer entries that can no longer do anything.

        Entries are not removed when their connection or session goes (a
        heap cannot do that cheaply), so churn (connections opened and
        closed faster than their keep-alive runs out) would pile them up for
        up to 1.5 times the longest keep-alive. Compacting when the heap
        outgrows what is alive keeps it proportional to the live
        connections and sessions, at an amortized constant cost per entry.
        """
        conns = self._conns
        sessions = self._sessions
        kept: list[tuple[float, int, str, Any]] = []
        watched: set[int] = set()
        for entry in sorted(self._timers):
            when, _, kind, key = entry
            if kind == "conn":
                # A connection's handler re-arms itself: its earliest entry is enough.
                conn = conns.get(key)
                if conn is None or conn.finished or key in watched:
                    continue
                watched.add(key)
            elif kind == "session":
                session = sessions.get(key)
                if session is None or session.expires_at != when:
                    continue
            elif kind == "will":
                session = sessions.get(key)
                if session is None or session.will_due != when:
                    continue
            kept.append(entry)
        # A sorted list is a heap; in place, as handle_timer may be walking it.
        self._timers[:] = kept

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

    def _connack_v5(
        self,
        conn: BrokerConnection,
        session_present: bool,
        session_expiry_interval: int | None,
        server_keep_alive: int | None,
        auth_data: bytes | None,
    ) -> ConnAckPacket:
        """The accepting MQTT 5 CONNACK, with what differs from the defaults."""
        config = self.config
        connect = conn.connect
        assert connect is not None
        return ConnAckPacket(
            session_present,
            _C.SUCCESS,
            session_expiry_interval=session_expiry_interval,
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
            server_keep_alive=server_keep_alive,
            authentication_method=connect.authentication_method,
            authentication_data=auth_data,
        )

    def _accept(self, conn: BrokerConnection, now: float, auth_data: bytes | None) -> None:
        """CONNECT accepted: take over or create the session, send CONNACK, resume."""
        connect = conn.connect
        assert connect is not None
        config = self.config
        client_id = conn.client_id
        limit = connect.maximum_packet_size if conn.v5 else None
        if limit is not None:
            # The accepting CONNACK must fit the client's Maximum Packet Size
            # [MQTT-3.1.2-24]. Checked before anything changes, with every
            # property that may appear: a client that cannot receive it cannot
            # be served, and gets the 5-byte refusal 0x95 instead.
            largest = self._connack_v5(conn, True, MAX_PACKET_ID, MAX_PACKET_ID, auth_data)
            if len(encode_packet(largest, version=ProtocolVersion.MQTT_5_0)) > limit:
                conn._refuse(_C.PACKET_TOO_LARGE, None)
                return
        if conn.v5:
            requested = connect.session_expiry_interval or 0
        else:
            # 3.1/3.1.1: a clean session lasts as long as the connection; a
            # persistent one until the server's limit, if any [MQTT-3.1.2-4].
            requested = 0 if connect.clean_start else NEVER_EXPIRES
        expiry = self._grant_expiry(requested)
        session = self._sessions.get(client_id)
        if session is not None and session.username != conn.username:
            # The client identifier is another identity's: none of that
            # session (queued or in-flight messages, subscriptions) may reach
            # this one, whatever the clean flags say.
            if config.session_identity_mismatch == "refuse":
                conn._refuse(_C.NOT_AUTHORIZED, "client identifier in use by another user")
                return
            resume = False
        else:
            # [MQTT-3.1.2-4] (5.0) / [MQTT-3.1.2-6] (3.1.1): a clean start
            # discards the session; so does a session that was to end with its
            # network connection (Session Expiry 0, 3.x CleanSession 1), even
            # when that connection is only now being taken over
            # [MQTT-3.1.2-23]: it is never resumed.
            resume = session is not None and not connect.clean_start and session.persistent
        if session is not None and session.connection is not None:
            self._take_over(session.connection, now, session_ends=not resume)
        if session is not None and not resume:
            self._end_session(session, now)
            session = None
        elif session is not None and session.will is not None:
            # The client is back before its will delay ran out: no will
            # [MQTT-3.1.3-9].
            session.will = None
            session.will_due = None
        session_present = False
        if session is None:
            session = Session(
                client_id,
                receive_maximum=config.receive_maximum,
                max_queued=config.max_queued_messages,
            )
            session.username = conn.username
            self._sessions[client_id] = session
        else:
            session_present = True  # [MQTT-3.2.2-2]
        session.expiry_interval = expiry
        session.expires_at = None
        session.connection = conn
        conn.session = session
        keep_alive = requested_keep_alive = connect.keep_alive
        if keep_alive == 0 or keep_alive > config.max_keep_alive:
            keep_alive = config.max_keep_alive
        elif keep_alive < config.min_keep_alive:
            keep_alive = config.min_keep_alive
        server_keep_alive = config.server_keep_alive
        if server_keep_alive is not None:
            keep_alive = server_keep_alive  # [MQTT-3.2.2-21]
        elif keep_alive != requested_keep_alive:
            # Clamped to the bounds: a v5 client is told and must use it
            # [MQTT-3.2.2-21]; a 3.x client cannot be told, and is held to
            # it silently (3.1.1 section 3.1.2.10: a server may close an
            # inactive client whatever its Keep Alive).
            server_keep_alive = keep_alive
        conn.keep_alive = keep_alive
        outbound = session.outbound
        if conn.v5:
            conn.max_out = connect.maximum_packet_size or conn.max_out
            conn._peer_max_packet_size = connect.maximum_packet_size
            quota = connect.receive_maximum or MAX_PACKET_ID
        else:
            quota = MAX_PACKET_ID
        outbound.send_quota = min(quota, config.max_inflight_messages)
        if conn.version == ProtocolVersion.MQTT_3_1:
            # 3.1's CONNACK has no session present flag; the session still
            # resumes, as 3.1 brokers did.
            ack = ConnAckPacket(False, _C.SUCCESS)
        else:
            ack = ConnAckPacket(session_present, _C.SUCCESS)
        if conn.v5:
            ack = self._connack_v5(
                conn,
                session_present,
                expiry if expiry != requested else None,
                server_keep_alive,
                auth_data,
            )
        conn._send(ack)
        conn.state = transition(conn.state, Input.SEND_CONNACK)
        self._watch(conn)
        if session.persistent:
            self.store.save_session(session.snapshot())
        # [MQTT-4.4.0-1]: resend unacknowledged PUBLISH (DUP) and PUBREL.
        authorizer = self.authorizer
        for packet in outbound.resend():
            if isinstance(packet, PublishPacket):
                if authorizer is not None and not authorizer.may_receive(
                    client_id, conn.username, packet.topic
                ):
                    # The rights are checked as a message is delivered, a
                    # resent one included: they may have changed since.
                    self._end_flow(session, packet.packet_id)
                    self.messages_dropped += 1
                    continue
                if not conn.v5:
                    packet = attrs.evolve(packet, subscription_identifiers=(), **_NO_V5_PROPS)
            try:
                conn._send(packet)
            except LocalProtocolError:
                # Too large for the client now: the flow ends [MQTT-3.1.2-25].
                self._end_flow(session, packet.packet_id)
                self.messages_dropped += 1
        self._pump(session, now)

    def _take_over(self, old: BrokerConnection, now: float, *, session_ends: bool) -> None:
        """A new connection claims the client id: the old one goes [MQTT-3.1.4-3].

        ``session_ends``: the new connection does not resume the session, so
        the old connection's will goes now, will delay or not (MQTT 5.0
        section 3.1.2.5: the will is delayed until the delay has passed or
        the session ends, whichever is first).
        """
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
        if will is not None and (session_ends or not will.will_delay_interval):
            # The old connection did not end with DISCONNECT: its will goes,
            # unless a will delay covers the reconnection that just happened.
            self._send_will(will, session, now)

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
                self._send_will(will, session, now)
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
            self._send_will(will, session, now)

    def _send_will(self, will: Will, session: Session, now: float) -> None:
        """Publish ``session``'s will, with its owner's rights."""
        authorizer = self.authorizer
        client_id = session.client_id
        if authorizer is not None and not authorizer.may_publish(
            client_id, session.username, will.topic
        ):
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
            # A will that does not fit the retained limits still goes out, unretained.
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
        unhold = self._unhold
        for message in session.inflight_messages.values():
            unhold(message)
        session.inflight_messages.clear()
        for pending in session.pending:
            unhold(pending[0])
        session.pending.clear()
        session.queued_bytes = 0
        self.store.delete_session(session.client_id)

    def _end_flow(self, session: Session, packet_id: int | None) -> None:
        """Forget a QoS 1/2 flow to the client that will not be completed."""
        assert packet_id is not None
        session.outbound.inflight.pop(packet_id, None)
        session.packet_ids.release(packet_id)
        message = session.inflight_messages.pop(packet_id, None)
        if message is not None:
            self._unhold(message)

    def _restore(self, record: StoredSession, now: float) -> None:
        """A session from the store, as it was when the broker stopped."""
        config = self.config
        session = Session(
            record.client_id,
            receive_maximum=config.receive_maximum,
            max_queued=config.max_queued_messages,
        )
        session.expiry_interval = record.session_expiry_interval
        session.username = record.username
        if session.expiry_interval != NEVER_EXPIRES:
            session.expires_at = now + session.expiry_interval
            self._push_timer(session.expires_at, "session", session.client_id)
        for subscription in record.subscriptions:
            self._add_subscription(
                session,
                Subscription(
                    subscription.topic_filter,
                    subscription.qos,
                    subscription.no_local,
                    subscription.retain_as_published,
                    subscription.retain_handling,
                ),
                subscription.subscription_identifier,
            )
        for stored in record.inflight:
            packet = stored.packet
            packet_id = stored.packet_id
            assert packet_id is not None
            session.outbound.start(attrs.evolve(packet, packet_id=packet_id))
            if stored.released:
                session.outbound.inflight[packet_id].stage = OutboundStage.RELEASED
            session.packet_ids.reserve(packet_id)
            message = Message.from_stored(stored, now)
            session.inflight_messages[packet_id] = message
            self._hold(message)
        for stored in record.queued:
            p = stored.packet
            message = Message.from_stored(stored, now)
            session.pending.append((message, p.qos, p.retain, p.subscription_identifiers))
            session.queued_bytes += message.size
            self._hold(message)
        session.inbound.awaiting_release.update(record.awaiting_release)
        if record.will is not None:
            session.will = record.will
            session.will_due = now + (record.will.will_delay_interval or 0)
            self._push_timer(session.will_due, "will", session.client_id)
        self._sessions[session.client_id] = session
