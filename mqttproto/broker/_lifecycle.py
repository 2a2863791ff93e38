"""Connections and sessions for the :class:`~mqttproto.broker.Broker`.

What the broker does with a client's :class:`~mqttproto.events.ConnectRequested`
(authentication, then the session: taken over, resumed or new, bound to its
owner), with :class:`~mqttproto.events.AuthReceived`, and with the end of a
connection (:class:`~mqttproto.events.Disconnected`: the will, the session's
expiry); wills, session expiry and sessions restored from the store.
"""

from __future__ import annotations

import functools
import itertools
from collections import deque
from typing import TYPE_CHECKING, Any

from ..auth import ConnectInfo
from ..config import BrokerConfig
from ..enums import ProtocolVersion, ReasonCode
from ..errors import LocalProtocolError
from ..events import AuthReceived, ConnectRequested, Disconnected
from ..packets import PublishPacket, Subscription, Will
from ..store import SessionStore, StoredSession
from ._message import NEVER_EXPIRES, Message
from ._router import Router
from ._sessions import Link, Session

__all__ = ["Lifecycle"]

_C = ReasonCode
_V5 = ProtocolVersion.MQTT_5_0


class Lifecycle:
    """The connection and session half of :class:`~mqttproto.broker.Broker`."""

    config: BrokerConfig
    store: SessionStore
    _durable: bool
    authenticator: Any
    authorizer: Any
    _sessions: dict[str, Session]
    _router: Router[Session]
    _closing: dict[int, None]
    _dirty: dict[int, None]
    _client_ids: itertools.count[int]
    #: Counts the changes of sessions' connections (see _fanout.Plan).
    _plan_epoch: int

    if TYPE_CHECKING:

        def _authenticate(self, conn: Any, ask: Any, now: float, *, connect: bool) -> None: ...

        def _push_timer(self, when: float, kind: str, key: Any) -> None: ...

        def _watch(self, link: Link) -> None: ...

        def _pump(self, session: Session, now: float) -> None: ...

        def _retain(self, message: Message, *, limited: bool = True) -> bool: ...

        def _route(self, message: Message, now: float, route: Any = None) -> tuple[int, int]: ...

        def _hold(self, message: Message) -> None: ...

        def _unhold(self, message: Message) -> None: ...

        def _drop_feeds(self, session: Session) -> None: ...

        def _save_session(self, session: Session) -> None: ...

        def _forget_session(self, session: Session) -> None: ...

        def _add_subscription(
            self, session: Session, request: Subscription, sub_id: int | None
        ) -> Any: ...

        messages_dropped: int
        dropped_too_large: int
        dropped_denied: int
        clients_connected: int
        clients_maximum: int
        connections_total: int

    # -- CONNECT and AUTH ---------------------------------------------------------------

    def _set_link(self, session: Session, link: Link | None) -> None:
        """Attach ``link`` to ``session`` (None: detach): the one place where
        a session's connection changes, so that fan-out plans are made anew."""
        # Counted here, where every connection of a session begins and ends
        # (connections_total, clients_maximum: mqttproto._statistics).
        self.clients_connected += (link is not None) - (session.link is not None)
        if link is not None:
            self.connections_total += 1
            if self.clients_connected > self.clients_maximum:
                self.clients_maximum = self.clients_connected
        session.link = link
        self._plan_epoch += 1

    def _on_connect(self, link: Link, event: ConnectRequested, now: float) -> None:
        link.connect = event
        version = event.version
        link.v5 = version == _V5
        client_id = event.client_id
        if not client_id:
            # [MQTT-3.1.3-6]: the server assigns a unique identifier (3.1.1
            # only with a clean session, which the reader checked [MQTT-3.1.3-8]).
            client_id = self._new_client_id()
            link.assigned_id = client_id
        link.client_id = client_id
        identity = link.identity
        username = event.username if identity is None else identity
        # With a transport identity the CONNECT's password proves nothing
        # more, and is not handed on (mosquitto does the same).
        password = event.password if identity is None else None
        if username == "":
            # An empty User Name is no username, as for mosquitto: the client
            # is anonymous (admitted or refused by allow_anonymous, given the
            # anonymous ACL rules) and a password with it is ignored, so that
            # clients that always send "" (aiomqtt's default) still connect.
            username = password = None
        link.username = username
        if link.over_quota:
            # max_connections: 0x97 (3.x: return code 3, server unavailable).
            link.conn.refuse(_C.QUOTA_EXCEEDED, reason_string="too many connections")
            return
        maximum = self.config.max_keep_alive  # 0: none
        if not link.v5 and maximum and event.keep_alive > maximum:
            # A 3.x client cannot be told a shorter Keep Alive (MQTT 5 gets
            # Server Keep Alive in CONNACK instead): refused with return code
            # 2, Identifier rejected, as mosquitto 2.0 does with max_keepalive.
            # One asking 0 (none) is admitted and held to the maximum
            # silently, where mosquitto 2.0.16+ refuses it too: that would
            # shut out every client whose library defaults to 0.
            link.conn.refuse(
                _C.CLIENT_IDENTIFIER_NOT_VALID,
                reason_string=f"keep-alive longer than {self.config.max_keep_alive} s",
            )
            return
        info = link.auth_info = ConnectInfo(
            client_id,
            username,
            password,
            version,
            event.authentication_method,
            event.authentication_data,
            username_verified=identity is not None,
        )
        self._authenticate(
            link, functools.partial(self.authenticator.authenticate, info), now, connect=True
        )

    def _on_auth(self, link: Link, event: AuthReceived, now: float) -> None:
        ask = functools.partial(
            self.authenticator.continue_authentication, link.auth_info, event.authentication_data
        )
        self._authenticate(link, ask, now, connect=False)

    def _authenticated(self, link: Link, result: Any, now: float) -> None:
        """Act on the authenticator's answer (an :class:`~mqttproto.auth.AuthResult`)."""
        conn = link.conn
        if conn.closed:
            return
        code = ReasonCode(result.reason_code)
        connected = conn.state.value == "connected"
        if code >= 0x80:
            if connected:
                # [MQTT-4.12.1-2]: a failed re-authentication ends the connection.
                conn.disconnect(code, reason_string=result.reason_string)
            else:
                conn.refuse(code, reason_string=result.reason_string)
            return
        if code == _C.CONTINUE_AUTHENTICATION or connected:
            assert link.connect is not None
            if link.connect.authentication_method is None:
                conn.refuse(
                    _C.NOT_AUTHORIZED, reason_string="authenticator continued without a method"
                )
                return
            conn.auth(
                code,
                authentication_data=result.authentication_data,
                reason_string=result.reason_string,
            )
            return
        self._accept(link, now, result.authentication_data)

    def _refuse_busy(self, link: Link, now: float) -> None:
        """Too many authentications pending: 0x89 *Server busy* (3.x: return code 3)."""
        reason = "too many authentications in progress"
        conn = link.conn
        if conn.closed:
            return
        if conn.state.value == "connected":
            conn.disconnect(_C.SERVER_BUSY, reason_string=reason)
        else:
            conn.refuse(_C.SERVER_BUSY, reason_string=reason)

    # -- the session ---------------------------------------------------------------------

    def _accept(self, link: Link, now: float, auth_data: bytes | None) -> None:
        """CONNECT accepted: take over, resume or create the session; CONNACK."""
        event = link.connect
        assert event is not None
        config = self.config
        conn = link.conn
        client_id = link.client_id
        if link.v5:
            requested = event.session_expiry_interval or 0
        else:
            # 3.1/3.1.1: a clean session lasts as long as the connection; a
            # persistent one until the server's limit, if any [MQTT-3.1.2-4].
            requested = 0 if event.clean_start else NEVER_EXPIRES
        expiry = self._grant_expiry(requested)
        session = self._sessions.get(client_id)
        if session is not None and session.username != link.username:
            # The client identifier is another identity's: none of that
            # session (queued or in-flight messages, subscriptions) may reach
            # this one, whatever the clean flags say.
            if config.session_identity_mismatch == "refuse":
                conn.refuse(
                    _C.NOT_AUTHORIZED, reason_string="client identifier in use by another user"
                )
                return
            resume = False
        else:
            # [MQTT-3.1.2-4] (5.0) / [MQTT-3.1.2-6] (3.1.1): a clean start
            # discards the session; so does a session that was to end with its
            # network connection (Session Expiry 0, 3.x CleanSession 1), even
            # when that connection is only now being taken over
            # [MQTT-3.1.2-23]: it is never resumed.
            resume = session is not None and not event.clean_start and session.persistent
        fresh = session if resume else Session(client_id, max_queued=config.max_queued_messages)
        assert fresh is not None
        if resume:
            self._drop_forbidden_inflight(fresh, link)
        try:
            conn.accept(
                session_present=resume,
                session=fresh.flows,
                assigned_client_identifier=link.assigned_id if link.v5 else None,
                session_expiry_interval=expiry if link.v5 and expiry != requested else None,
                authentication_data=auth_data,
            )
        except LocalProtocolError:
            # The CONNACK is larger than the client's Maximum Packet Size
            # [MQTT-3.1.2-24]: a client that cannot receive it cannot be
            # served; the 5-byte refusal 0x95 fits.
            conn.refuse(_C.PACKET_TOO_LARGE)
            return
        link.max_out = conn.client_maximum_packet_size
        if session is not None and session.link is not None:
            self._take_over(session.link, now, session_ends=not resume)
        if session is not None and not resume:
            self._end_session(session, now)
        elif session is not None and session.will is not None:
            # The client is back before its will delay ran out: no will
            # [MQTT-3.1.3-9].
            session.will = None
            session.will_due = None
        if not resume:
            fresh.username = link.username
            self._sessions[client_id] = fresh
        fresh.expiry_interval = expiry
        fresh.expires_at = None
        self._set_link(fresh, link)
        link.session = fresh
        self._watch(link)
        if event.will is None and event.authentication_method is None:
            # Nothing more is read from the CONNECT (no will to publish, no
            # re-authentication): an idle connection does not keep it.
            link.connect = None
            link.auth_info = None
        if fresh.persistent:
            self._save_session(fresh)
        elif fresh.recorder is not None:
            # Resumed with a Session Expiry Interval of 0 now: no longer kept.
            self._forget_session(fresh)
        # In-flight messages the connection could not resend (too large for
        # the client) were reported; give their budget back.
        for packet_id in [
            p for p in fresh.inflight_messages if p not in fresh.flows.outbound.inflight
        ]:
            self._unhold(fresh.inflight_messages.pop(packet_id))
            if fresh.recorder is not None:
                fresh.recorder.end_inflight(client_id, packet_id)
            self.messages_dropped += 1
            self.dropped_too_large += 1
        fresh.give_back_inflight()
        self._pump(fresh, now)

    def _drop_forbidden_inflight(self, session: Session, link: Link) -> None:
        """Before a resume: in-flight messages the client may no longer receive
        are not sent again (the rights are checked as each message is
        delivered, a resent one included: they may have changed since)."""
        authorizer = self.authorizer
        if authorizer is None:
            return
        for inflight in session.flows.inflight:
            if inflight.released or authorizer.may_receive(
                session.client_id, link.username, inflight.packet.topic
            ):
                continue
            session.flows.discard_inflight(inflight.packet_id)
            if session.recorder is not None:
                session.recorder.end_inflight(session.client_id, inflight.packet_id)
            message = session.inflight_messages.pop(inflight.packet_id, None)
            if message is not None:
                self._unhold(message)
            self.messages_dropped += 1
            self.dropped_denied += 1

    def _take_over(self, old: Link, now: float, *, session_ends: bool) -> None:
        """A new connection claims the client id: the old one goes [MQTT-3.1.4-3].

        ``session_ends``: the new connection does not resume the session, so
        the old connection's will goes now, will delay or not (MQTT 5.0
        section 3.1.2.5: the will is delayed until the delay has passed or
        the session ends, whichever is first).
        """
        conn = old.conn
        if not conn.closed:
            if conn.state.value == "connected":
                conn.disconnect(_C.SESSION_TAKEN_OVER)
            else:
                conn.close()
        list(conn.events())  # its Disconnected: handled here
        self._dirty[old.id] = None
        session = old.session
        old.finished = True
        old.session = None
        self._closing[old.id] = None
        connect = old.connect
        if session is None or connect is None:
            return
        self._set_link(session, None)
        will = connect.will
        if will is not None and (session_ends or not will.will_delay_interval):
            # The old connection did not end with DISCONNECT: its will goes,
            # unless a will delay covers the reconnection that just happened.
            self._send_will(will, session, now)

    def _on_disconnected(self, link: Link, event: Disconnected, now: float) -> None:
        """The connection is over (any reason): will, session, close."""
        link.goodbye = event
        if event.by_client:
            # [MQTT-3.14.4-3]: a normal DISCONNECT discards the will; 0x04 asks for it.
            link.will_on_close = event.reason_code == _C.DISCONNECT_WITH_WILL_MESSAGE
            session = link.session
            if event.session_expiry_interval is not None and session is not None:
                session.expiry_interval = self._grant_expiry(event.session_expiry_interval)
        self._connection_ended(link, now)

    def _connection_ended(self, link: Link, now: float) -> None:
        if link.finished:
            return
        link.finished = True
        self._closing[link.id] = None
        self._dirty[link.id] = None
        session = link.session
        link.session = None
        if session is None:
            return
        self._set_link(session, None)
        connect = link.connect
        will = connect.will if connect is not None else None
        if will is not None and link.will_on_close:
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
        self._save_session(session)
        session.park_flows()

    # -- wills and the end of sessions ----------------------------------------------------

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
        for sub in session.clear_subscriptions():
            router.remove(sub)
        session.flows.clear()
        unhold = self._unhold
        for message in session.inflight_messages.values():
            unhold(message)
        session.inflight_messages.clear()
        session.give_back_inflight()
        for pending in session.pending:
            unhold(pending[0])
        session.pending = ()
        session.queued_bytes = 0
        self._drop_feeds(session)
        self._forget_session(session)

    def _restore(self, record: StoredSession, now: float) -> None:
        """A session from the store, as it was when the broker stopped."""
        session = Session(record.client_id, max_queued=self.config.max_queued_messages)
        session.expiry_interval = record.session_expiry_interval
        session.username = record.username
        if session.expiry_interval != NEVER_EXPIRES:
            # The stored deadline keeps running (a store that outlives the
            # process gives it on this process's clock, downtime counted); a
            # session that was connected when the broker stopped lost its
            # connection now.
            expires_at = record.expires_at
            session.expires_at = now + session.expiry_interval if expires_at is None else expires_at
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
            packet_id = stored.packet_id
            assert packet_id is not None
            session.flows.restore_inflight(packet_id, stored.packet, released=stored.released)
            message = Message.from_stored(stored, now)
            session.inflight_messages[packet_id] = message
            self._hold(message)
        for stored in record.queued:
            p = stored.packet
            message = Message.from_stored(stored, now)
            if not session.pending:
                session.pending = deque()
            session.pending.append((message, p.qos, p.retain, p.subscription_identifiers))
            session.queued_bytes += message.size
            self._hold(message)
        session.flows.restore_awaiting_release(record.awaiting_release)
        if record.will is not None:
            session.will = record.will
            due = record.will_due
            session.will_due = now + (record.will.will_delay_interval or 0) if due is None else due
            self._push_timer(session.will_due, "will", session.client_id)
        if self._durable and session.persistent:
            # The store holds it: from now on it records what changes.
            session.recorder = self.store
            session.releases_seen = session.flows.releases
            session.stored_awaiting = frozenset(record.awaiting_release)
        self._sessions[session.client_id] = session

    def _new_client_id(self) -> str:
        while True:
            client_id = f"auto-{next(self._client_ids)}"
            if client_id not in self._sessions:
                return client_id

    def _grant_expiry(self, requested: int) -> int:
        limit = self.config.max_session_expiry_interval
        return requested if limit is None else min(requested, limit)
