"""Routing for the :class:`~mqttproto.broker.Broker`: PUBLISH in, deliveries out.

The hot path: a client's PUBLISH is checked and acknowledged, its route is
looked up (:class:`~mqttproto._router.Router`, cached per topic), and each
target session gets the message's shared wire form appended to its
connection's output, or a place in its bounded queue. No event object, no
packet object per QoS 0 delivery; one small packet per QoS 1/2 delivery, kept
for a resend with DUP. Also here: SUBSCRIBE/UNSUBSCRIBE, retained messages
and ``$SYS`` statistics.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from ._retained import RetainedStore
from ._router import Route, Router, Sub
from ._session import Message, Pending, Session, message_wire
from ._state import ConnectionState
from .config import BrokerConfig
from .enums import ReasonCode
from .errors import RemoteProtocolError
from .packets import (
    PublishPacket,
    SubAckPacket,
    SubscribePacket,
    Subscription,
    UnsubAckPacket,
    UnsubscribePacket,
)
from .store import RetainedMessage, SessionStore
from .topics import parse_shared_subscription

if TYPE_CHECKING:
    from ._broker_connection import BrokerConnection

__all__ = ["Routing"]

_S = ConnectionState
_C = ReasonCode
_ACK = struct.Struct(">BBH").pack
_ACK_CODE = struct.Struct(">BBHB").pack
_u16 = struct.Struct(">H").pack
# Enum members read once: a class attribute lookup on an Enum is slow.
_SUCCESS = _C.SUCCESS
_NOT_AUTHORIZED = _C.NOT_AUTHORIZED
_QUOTA_EXCEEDED = _C.QUOTA_EXCEEDED
_NO_MATCHING_SUBSCRIBERS = _C.NO_MATCHING_SUBSCRIBERS


class Routing:
    """The publishing and subscribing half of :class:`~mqttproto.broker.Broker`."""

    config: BrokerConfig
    store: SessionStore
    authorizer: Any
    messages_received: int
    messages_sent: int
    #: Deliveries dropped or refused by a bound (queue, bytes, memory, a
    #: slow or small client): ``$SYS/broker/publish/messages/dropped``.
    messages_dropped: int
    #: Bytes of the messages sessions hold (queued or in flight), each
    #: counted once, and of the output backlogs adapters report: what
    #: ``memory_limit`` bounds.
    _held_bytes: int
    _backlog_total: int
    _router: Router
    _retained: RetainedStore
    _dirty: dict[int, None]
    _sessions: dict[str, Session]
    _started_at: float | None

    # -- internals: publishing ------------------------------------------------------------

    def _client_publish(self, conn: BrokerConnection, packet: PublishPacket, now: float) -> None:
        """A PUBLISH from a client: check, acknowledge, retain and route it."""
        if packet.topic_alias is not None:
            packet = conn._resolve_alias(packet, self.config.topic_alias_maximum, keep=False)
        topic = packet.topic
        # max_topic_length, counted in bytes only when the characters leave a doubt.
        if len(topic) > conn._topic_chars_ok:
            limit = self.config.max_topic_length
            if len(topic.encode()) > limit:
                raise RemoteProtocolError(
                    f"topic name longer than {limit} bytes", _C.TOPIC_NAME_INVALID
                )
        if packet.user_properties and conn._too_many_properties(packet.user_properties):
            # Refused, not routed or retained: 0x97 for QoS 1/2 (MQTT 5.0
            # section 3.4.2.1 / 3.5.2.1), QoS 0 dropped. The flow ends here,
            # so a QoS 2 identifier is not held.
            if packet.qos:
                first = 0x40 if packet.qos == 1 else 0x50
                assert packet.packet_id is not None
                conn._out.append(_ACK_CODE(first, 3, packet.packet_id, _C.QUOTA_EXCEEDED))
            return
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
        if packet.subscription_identifiers:
            # [MQTT-3.3.4-6]: only a server puts Subscription Identifiers in PUBLISH.
            raise RemoteProtocolError("a client PUBLISH carries a Subscription Identifier")
        # A topic in the route cache has passed this check before.
        route = self._router._cache.get(topic)
        if route is None and topic.count("/") >= config.max_topic_levels:
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
        code = _SUCCESS
        if not allowed:
            # 3.1.1 has no way to say no: acknowledged and dropped.
            code = _NOT_AUTHORIZED if conn.v5 else _SUCCESS
        else:
            if route is None:
                route = self._router.route(topic)
            if (
                not qos
                and not packet.retain
                and not route.groups
                and authorizer is None
                and packet.message_expiry_interval is None
            ):
                # The hot path: a plain QoS 0 message to plain subscriptions.
                if not (route.targets and self._fan_out_qos0(packet, conn.client_id, route, now)):
                    code = _NO_MATCHING_SUBSCRIBERS if conn.v5 else _SUCCESS
            elif packet.retain or route.targets or route.groups:
                message = Message(packet, now, conn.client_id)
                if packet.retain and not self._retain(message):
                    # No room in the retained store: refused whole, neither
                    # retained nor routed; 0x97 in v5 (MQTT 5.0 section 3.4.2.1).
                    code = _QUOTA_EXCEEDED if conn.v5 else _SUCCESS
                else:
                    reached, refused = self._route(message, now, route)
                    if not reached and conn.v5:
                        code = _QUOTA_EXCEEDED if refused else _NO_MATCHING_SUBSCRIBERS
            elif conn.v5:
                code = _NO_MATCHING_SUBSCRIBERS
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

    def _fan_out_qos0(self, packet: PublishPacket, origin: str, route: Route, now: float) -> int:
        """Deliver a QoS 0 message without retain flag or expiry to ``route``'s
        targets (no shared groups, no authorizer); return how many it reached.

        It goes out at QoS 0 whatever was granted [MQTT-3.8.4-8], with the
        retain flag clear, so each connected client gets the wire form of
        its version, encoded once, unless MQTT 5 subscription identifiers
        make its copy different; those, and clients that are away, take the
        general path with a :class:`Message`.
        """
        forms: list[bytes | None] = [None, None]  # MQTT 3.x, MQTT 5
        message: Message | None = None
        dirty = self._dirty
        reached = sent = 0
        for target in route.targets:
            session = target.session
            if session.client_id == origin:
                if not target.has_local:
                    continue  # [MQTT-3.8.3-3] No Local
                sub_ids = target.local_sub_ids
            else:
                sub_ids = target.sub_ids
            conn = session.connection
            if conn is None or (sub_ids and conn.v5):
                if message is None:
                    message = Message(packet, now, origin)
                if self._deliver(session, message, 0, False, sub_ids, now):
                    reached += 1
                continue
            reached += 1
            v5 = conn.v5
            data = forms[v5]
            if data is None:
                data = forms[v5] = message_wire(packet, v5)
            # Dropped if too large for the client [MQTT-3.1.2-25], and so is
            # one above the connection's max_unsent_bytes high-water mark.
            if len(data) <= conn.max_out and conn.unsent < conn.max_unsent:
                conn.unsent += len(data)
                conn._out.append(data)
                dirty[conn.id] = None
                sent += 1
            else:
                self.messages_dropped += 1
        self.messages_sent += sent
        return reached

    def _retain(self, message: Message, *, limited: bool = True) -> bool:
        """Store, replace or delete the retained message of a topic [MQTT-3.3.1-5/6].

        False (and nothing changes) when a ``limited`` message does not fit
        ``max_retained_messages`` / ``max_retained_bytes``.
        """
        packet = message.packet
        topic = packet.topic
        retained_store = self._retained
        if not packet.payload:
            if retained_store.delete(topic):
                self.store.set_retained(topic, None)
            return True
        owner = message.origin
        if limited:
            config = self.config
            old_size, new_size, old_owner = retained_store.sizes(topic, packet.payload)
            if (
                old_size is None and len(retained_store) >= config.max_retained_messages
            ) or retained_store.bytes - (old_size or 0) + new_size > config.max_retained_bytes:
                return False
            if owner is not None:
                # One client's share, so that it cannot use up everyone's quota.
                count, used = retained_store.usage(owner)
                if old_owner == owner:
                    used -= old_size or 0
                else:
                    count += 1
                if (
                    count > config.max_retained_messages_per_client
                    or used + new_size > config.max_retained_bytes_per_client
                ):
                    return False
        retained = RetainedMessage(
            message.packet_for(True, packet.qos, True, (), None), message.expires_at
        )
        retained_store.set(topic, retained, owner)
        self.store.set_retained(topic, retained)
        return True

    def _route(self, message: Message, now: float, route: Route | None = None) -> tuple[int, int]:
        """Deliver to every matching session; (reached, refused for quota)."""
        if route is None:
            route = self._router.route(message.packet.topic)
        if not (route.targets or route.groups):
            return 0, 0
        reached = refused = 0
        packet = message.packet
        origin = message.origin
        qos = packet.qos
        retain = packet.retain
        deliver = self._deliver
        authorizer = self.authorizer
        topic = packet.topic
        forms = message._forms
        dirty = self._dirty
        sent = 0
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
            conn = session.connection
            if not (granted and qos) and conn is not None:
                # The hot path, inlined: QoS 0 to a connected client is the
                # shared wire form appended to its output. Routing happens
                # when the message arrives, so the expiry interval is whole.
                v5 = conn.v5
                key = (v5, 0, retain and rap, sub_ids if v5 else ())
                form = forms.get(key)
                data = (form if form is not None else message.wire(*key, now))[0]
                # Dropped when too large for the client [MQTT-3.1.2-25] or
                # above the connection's max_unsent_bytes high-water mark.
                if len(data) <= conn.max_out and conn.unsent < conn.max_unsent:
                    conn.unsent += len(data)
                    conn._out.append(data)
                    dirty[conn.id] = None
                    sent += 1
                else:
                    self.messages_dropped += 1
                reached += 1
                continue
            if deliver(
                session, message, granted if granted < qos else qos, retain and rap, sub_ids, now
            ):
                reached += 1
            else:
                refused += 1
        self.messages_sent += sent
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
        """Send (or queue) one message to one session; False: refused by a
        bound (the queue, ``max_queued_bytes``, ``memory_limit``)."""
        conn = session.connection
        if conn is None:
            if not qos and not self.config.queue_qos0_offline:
                return True
            if not self._enqueue(session, (message, qos, retain, sub_ids)):
                return False
            if session.persistent:
                self.store.append_queued(session.client_id, message.stored(qos, retain, sub_ids))
            return True
        v5 = conn.v5
        if not v5 and sub_ids:
            sub_ids = ()
        if not qos:
            head, _ = message.wire(v5, 0, retain, sub_ids, now)
            # [MQTT-3.1.2-25]: a message too large for the client is dropped;
            # so is one above the max_unsent_bytes high-water mark.
            if len(head) <= conn.max_out and conn.unsent < conn.max_unsent:
                conn.unsent += len(head)
                conn._out.append(head)
                self._dirty[conn.id] = None
                self.messages_sent += 1
            else:
                self.messages_dropped += 1
            return True
        outbound = session.outbound
        if (
            session.pending
            or len(outbound.inflight) >= outbound.send_quota
            or conn.unsent >= conn.max_unsent
        ):
            return self._enqueue(session, (message, qos, retain, sub_ids))
        if self._over_budget(message):
            self.messages_dropped += 1
            return False
        self._send_qos(session, conn, message, qos, retain, sub_ids, now)
        return True

    def _over_budget(self, message: Message) -> bool:
        """Whether holding ``message`` once more would pass ``memory_limit``
        (a message some session already holds costs nothing more).

        Output backlogs are not counted here but by the throttle of slow
        readers (``Broker.output_backlog``): a reader that stopped reading
        must not stop everyone else's messages.
        """
        limit = self.config.memory_limit
        return limit is not None and not message.holds and self._held_bytes + message.size > limit

    def _hold(self, message: Message) -> None:
        if not message.holds:
            self._held_bytes += message.size
        message.holds += 1

    def _unhold(self, message: Message) -> None:
        message.holds -= 1
        if not message.holds:
            self._held_bytes -= message.size

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
            self.messages_dropped += 1
            return  # [MQTT-3.1.2-25]
        packet_id = session.packet_ids.allocate()
        out = conn._out
        out.append(head)
        out.append(_u16(packet_id))
        out.append(tail)
        conn.unsent += len(head) + 2 + len(tail)
        session.outbound.start(message.packet_for(v5, qos, retain, sub_ids, packet_id))
        session.inflight_messages[packet_id] = message
        self._hold(message)
        self._dirty[conn.id] = None
        self.messages_sent += 1

    def _enqueue(self, session: Session, item: Pending) -> bool:
        """Queue for later, bounded by ``max_queued_messages``,
        ``max_queued_bytes`` and ``memory_limit``: drop the oldest queued QoS 0
        messages to make room, else drop a new QoS 0 message (at most once:
        True) or refuse a QoS 1/2 one (False; the publisher hears 0x97 in v5).
        Every message dropped or refused is counted."""
        message = item[0]
        size = message.size
        if self._over_budget(message):
            self.messages_dropped += 1
            return item[1] == 0
        pending = session.pending
        config = self.config
        excess_count = len(pending) + 1 - config.max_queued_messages
        excess_bytes = session.queued_bytes + size - config.max_queued_bytes
        if excess_count > 0 or excess_bytes > 0:
            # Which queued QoS 0 messages, oldest first, would make room;
            # nothing changes unless they are enough.
            victims: list[int] = []
            for index, queued in enumerate(pending):
                if excess_count <= 0 and excess_bytes <= 0:
                    break
                if queued[1] == 0:
                    victims.append(index)
                    excess_count -= 1
                    excess_bytes -= queued[0].size
            if excess_count > 0 or excess_bytes > 0:
                self.messages_dropped += 1
                return item[1] == 0
            for index in reversed(victims):
                dropped = pending[index][0]
                del pending[index]
                session.queued_bytes -= dropped.size
                self._unhold(dropped)
            self.messages_dropped += len(victims)
        pending.append(item)
        session.queued_bytes += size
        self._hold(message)
        return True

    def _pump(self, session: Session, now: float) -> None:
        """Send queued messages while the client's window has room."""
        conn = session.connection
        if conn is None or conn.state is not _S.CONNECTED:
            return
        pending = session.pending
        outbound = session.outbound
        authorizer = self.authorizer
        while pending:
            message, qos, retain, sub_ids = pending[0]
            if (qos and len(outbound.inflight) >= outbound.send_quota) or (
                conn.unsent >= conn.max_unsent
            ):
                # The window is full, or the output is above its high-water
                # mark: the rest waits (data_to_send pumps again).
                break
            pending.popleft()
            session.queued_bytes -= message.size
            if message.expired(now):
                pass  # [MQTT-3.3.2-5]: expired messages are not delivered
            elif authorizer is not None and not authorizer.may_receive(
                session.client_id, conn.username, message.packet.topic
            ):
                # Checked again as it is delivered: the rights may have
                # changed (a reloaded ACL) since it was queued.
                self.messages_dropped += 1
            elif qos:
                self._send_qos(
                    session, conn, message, qos, retain, sub_ids if conn.v5 else (), now
                )
            else:
                head, _ = message.wire(conn.v5, 0, retain, sub_ids if conn.v5 else (), now)
                if len(head) <= conn.max_out:
                    conn.unsent += len(head)
                    conn._out.append(head)
                    self.messages_sent += 1
                else:
                    self.messages_dropped += 1
            self._unhold(message)
        self._dirty[conn.id] = None

    def _flow_done(self, session: Session, packet_id: int, now: float) -> None:
        """A QoS 1/2 flow to the client ended (acknowledged, refused or dropped)."""
        session.packet_ids.release(packet_id)
        message = session.inflight_messages.pop(packet_id, None)
        if message is not None:
            self._unhold(message)
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
        requests = packet.subscriptions
        if len(requests) > config.max_filters_per_subscribe or (
            packet.user_properties and conn._too_many_properties(packet.user_properties)
        ):
            # Refused as a whole, nothing changes: one 0x97 *Quota exceeded*
            # per filter [MQTT-3.8.4-6] (3.1.1: 0x80 Failure).
            codes = [_QUOTA_EXCEEDED] * len(requests)
            requests = ()
        topic_chars_ok = config.max_topic_length // 4
        for request in requests:
            full_filter = request.topic_filter
            if len(full_filter) > topic_chars_ok and (
                len(full_filter.encode("utf-8", "surrogatepass")) > config.max_topic_length
            ):
                codes.append(_C.TOPIC_FILTER_INVALID)
                continue
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
            "$SYS/broker/publish/messages/dropped": self.messages_dropped,
            "$SYS/broker/subscriptions/count": len(self._router),
            "$SYS/broker/retained messages/count": len(self._retained),
            "$SYS/broker/uptime": int(now - self._started_at),
        }
        for topic, value in stats.items():
            message = Message(PublishPacket(topic, str(value).encode(), retain=True), now, None)
            self._retain(message, limited=False)
            self._route(message, now)
