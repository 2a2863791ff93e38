"""Routing for the :class:`~mqttproto.broker.Broker`: messages in, deliveries out.

The hot path: a client's message (a :class:`~mqttproto.events.MessageReceived`
from its :class:`~mqttproto.server.ServerConnection`) is checked against the
rights, retained if asked, routed (:class:`._router.Router`, cached per topic)
and acknowledged through its connection. Each target session gets the
message's shared wire form (:class:`~mqttproto.codec.PreparedPublish`,
encoded once per kind of receiver) through
:meth:`~mqttproto.server.ServerConnection.publish_prepared`, or a place in
its bounded queue. Also here: the memory budget, and ``$SYS``.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from .._state import ConnectionState
from ..config import BrokerConfig
from ..enums import ReasonCode
from ..events import MessageReceived
from ..store import RetainedMessage, SessionStore, StoredMessage
from ._fanout import FanOut
from ._message import Message, Pending
from ._retained import RetainedStore
from ._router import Route, Router
from ._sessions import Link, Session

__all__ = ["Routing"]

_C = ReasonCode
# Enum members read once: a class attribute lookup on an Enum is slow.
_SUCCESS = _C.SUCCESS
_QUOTA_EXCEEDED = _C.QUOTA_EXCEEDED
_NO_MATCHING_SUBSCRIBERS = _C.NO_MATCHING_SUBSCRIBERS
_CLOSED = ConnectionState.CLOSED


class Routing(FanOut):
    """The publishing half of :class:`~mqttproto.broker.Broker`."""

    config: BrokerConfig
    store: SessionStore
    authorizer: Any
    messages_received: int
    messages_sent: int
    #: Deliveries dropped or refused by a bound (queue, bytes, memory, a
    #: slow or small client): ``$SYS/broker/publish/messages/dropped``.
    messages_dropped: int
    #: The counters of :mod:`._statistics` (by QoS, by reason).
    messages_received_by_qos: list[int]
    messages_sent_by_qos: list[int]
    dropped_no_subscribers: int
    dropped_not_authorized: int
    dropped_denied: int
    dropped_too_large: int
    dropped_expired: int
    #: Bytes of the messages sessions hold (queued or in flight), each
    #: counted once, and of the output backlogs adapters report: what
    #: ``memory_limit`` bounds.
    _held_bytes: int
    _backlog_total: int
    _router: Router[Session]
    _retained: RetainedStore
    _dirty: dict[int, None]
    _sessions: dict[str, Session]
    _started_at: float | None
    _feeding: int
    _durable: bool
    _held_acks: list[tuple[Link, int, int, ReasonCode]]

    if TYPE_CHECKING:

        def _feed(self, session: Session, now: float) -> None: ...
        def _record_queued(self, client_ids: list[str], record: StoredMessage | None) -> None: ...

    # -- a client's message ---------------------------------------------------------------

    def _client_publish(self, link: Link, event: MessageReceived, now: float) -> None:
        """A message from a client: check, retain, route and acknowledge it."""
        packet = event.packet
        topic = packet.topic
        qos = packet.qos
        v5 = link.v5
        self.messages_received += 1
        if qos:
            self.messages_received_by_qos[qos] += 1
        authorizer = self.authorizer
        allowed = (
            not topic.startswith("$SYS")
            # A bridge's notification of its own state (mosquitto's convention),
            # the one $SYS topic a client may publish to: only its own.
            or topic == f"$SYS/broker/connection/{link.client_id}/state"
        ) and (authorizer is None or authorizer.may_publish(link.client_id, link.username, topic))
        code = _SUCCESS
        if not allowed:
            # 3.1.1 has no way to say no: acknowledged and dropped.
            code = self.config.denied
            self.dropped_not_authorized += 1
        else:
            router = self._router
            # The route cache, read first: one dict lookup for a known topic.
            route = router._cache.get(topic)
            if route is None:
                route = router.route(topic)
            # (A plain QoS 0 message to plain subscriptions went through the
            # fan-out of _on_message instead.)
            if packet.retain or route.targets or route.groups:
                message = Message(packet, now, link.client_id)
                if packet.retain and not self._retain(message):
                    # No room in the retained store: refused whole, neither
                    # retained nor routed; 0x97 in v5 (MQTT 5.0 section 3.4.2.1).
                    code = _QUOTA_EXCEEDED
                else:
                    reached, refused = self._route(message, now, route)
                    if not reached:
                        code = _QUOTA_EXCEEDED if refused else _NO_MATCHING_SUBSCRIBERS
                        if not refused:
                            self.dropped_no_subscribers += 1
            else:
                code = _NO_MATCHING_SUBSCRIBERS
                self.dropped_no_subscribers += 1
        if qos:
            packet_id = packet.packet_id
            assert packet_id is not None
            if self._durable:
                # Answered by the commit that stores it (Durability.commit).
                self._held_acks.append((link, packet_id, qos, code))
                return
            # MQTT 3.x acks carry no code: the connection sends a plain one.
            link.conn.acknowledge(packet_id, code if v5 else _SUCCESS)

    def _route(
        self, message: Message, now: float, route: Route[Session] | None = None
    ) -> tuple[int, int]:
        """Deliver to every matching session; (reached, refused by a bound)."""
        if route is None:
            route = self._router.route(message.packet.topic)
        if not (route.targets or route.groups):
            return 0, 0
        if self._feeding:
            # Retained messages still owed on this topic are superseded.
            self._retained.touch(message.packet.topic)
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
        config = self.config
        memory_limit = config.memory_limit
        max_queued = config.max_queued_messages
        max_queued_bytes = config.max_queued_bytes
        sent = dropped = 0
        # The delivery kind (QoS, retain flag, subscription ids) of ``record``.
        kind_qos = -1
        kind_retain = False
        kind_ids: tuple[int, ...] = ()
        record: StoredMessage | None = None
        # Sessions whose queue took ``record`` since the store was last told
        # (told at once per record, before anything else is recorded).
        queued_for: list[str] = []
        try:
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
                link = session.link
                if not (granted and qos) and link is not None:
                    # The hot path, inlined: QoS 0 to a connected client is the
                    # shared wire form. Routing happens when the message arrives,
                    # so the expiry interval is whole.
                    v5 = link.v5
                    key = (v5, 0, retain and rap, sub_ids if v5 else ())
                    form = forms.get(key)
                    if form is None:
                        form = message.form(*key, now)
                    # Dropped when too large for the client [MQTT-3.1.2-25] or
                    # above the connection's max_unsent_bytes high-water mark.
                    conn = link.conn
                    if (
                        form.size <= link.max_out
                        and conn.bytes_to_send + link.backlog < link.max_unsent
                    ):
                        conn.publish_prepared(form)
                        dirty[link.id] = None
                        sent += 1
                    else:
                        dropped += 1
                        if form.size > link.max_out:
                            self.dropped_too_large += 1
                    reached += 1
                    continue
                if granted > qos:
                    granted = qos
                if link is not None:
                    # The QoS 1/2 hot path, _deliver and _send_qos inlined: a
                    # connected client gets the message at once if its window has
                    # room and nothing queued waits before it; else it is queued.
                    v5 = link.v5
                    if not v5:
                        sub_ids = ()
                    conn = link.conn
                    pending = session.pending
                    if (
                        pending
                        or not conn.send_window
                        or conn.bytes_to_send + link.backlog >= link.max_unsent
                    ):
                        item = (message, granted, retain and rap, sub_ids)
                        size = message.size
                        if (
                            # _enqueue inlined where it only appends: a queue
                            # with room, within the memory budget.
                            pending
                            and len(pending) < max_queued
                            and session.queued_bytes + size <= max_queued_bytes
                            and (
                                memory_limit is None
                                or message.holds
                                or self._held_bytes + size <= memory_limit
                            )
                        ):
                            pending.append(item)
                            if session.recorder is not None:
                                # The record every session queued alike shares
                                # (Message.stored), looked up once per delivery kind.
                                if (
                                    granted != kind_qos
                                    or item[2] != kind_retain
                                    or sub_ids != kind_ids
                                ):
                                    if queued_for:
                                        self._record_queued(queued_for, record)
                                    kind_qos = granted
                                    kind_retain = item[2]
                                    kind_ids = sub_ids
                                    record = message.stored(granted, kind_retain, sub_ids)
                                queued_for.append(session.client_id)
                            session.queued_bytes += size
                            if not message.holds:
                                self._held_bytes += size
                            message.holds += 1
                            reached += 1
                        else:
                            if queued_for:
                                self._record_queued(queued_for, record)
                            if self._enqueue(session, item):
                                reached += 1
                            else:
                                refused += 1
                        continue
                    if (
                        memory_limit is not None
                        and not message.holds
                        and self._held_bytes + message.size > memory_limit
                    ):
                        dropped += 1  # _over_budget
                        refused += 1
                        continue
                    key = (v5, granted, retain and rap, sub_ids)
                    form = forms.get(key)  # whole expiry interval, as above
                    if form is None:
                        form = message.form(*key, now)
                    reached += 1
                    if form.size > link.max_out:
                        dropped += 1  # [MQTT-3.1.2-25]
                        self.dropped_too_large += 1
                        continue
                    packet_id = conn.publish_prepared(form)
                    assert packet_id is not None
                    # Held until the flow ends (_on_acknowledged): the memory
                    # budget counts a message while a client may ask for it again.
                    session.inflight_messages[packet_id] = message
                    recorder = session.recorder
                    if recorder is not None:
                        recorder.add_inflight(
                            session.client_id,
                            packet_id,
                            message.stored(granted, retain and rap, sub_ids),
                        )
                    if not message.holds:
                        self._held_bytes += message.size
                    message.holds += 1
                    dirty[link.id] = None
                    sent += 1
                    self.messages_sent_by_qos[granted] += 1
                    continue
                if queued_for:
                    self._record_queued(queued_for, record)
                if deliver(session, message, granted, retain and rap, sub_ids, now):
                    reached += 1
                else:
                    refused += 1
        finally:
            # Also when something raised: the store follows what was queued.
            if queued_for:
                self._record_queued(queued_for, record)
        self.messages_sent += sent
        self.messages_dropped += dropped
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
        link = session.link
        if link is None:
            if not qos and not self.config.queue_qos0_offline:
                return True
            if not self._enqueue(session, (message, qos, retain, sub_ids)):
                return False
            if session.persistent and session.recorder is None:
                # A store that is not durable: only what an absent client's
                # session gets is recorded (its recorder records everything).
                self.store.append_queued(session.client_id, message.stored(qos, retain, sub_ids))
            return True
        v5 = link.v5
        if not v5 and sub_ids:
            sub_ids = ()
        conn = link.conn
        if not qos:
            form = message.form(v5, 0, retain, sub_ids, now)
            # [MQTT-3.1.2-25]: a message too large for the client is dropped;
            # so is one above the max_unsent_bytes high-water mark.
            if form.size <= link.max_out and conn.bytes_to_send + link.backlog < link.max_unsent:
                conn.publish_prepared(form)
                self._dirty[link.id] = None
                self.messages_sent += 1
            else:
                self.messages_dropped += 1
                if form.size > link.max_out:
                    self.dropped_too_large += 1
            return True
        if (
            session.pending
            or not conn.send_window
            or conn.bytes_to_send + link.backlog >= link.max_unsent
        ):
            return self._enqueue(session, (message, qos, retain, sub_ids))
        if self._over_budget(message):
            self.messages_dropped += 1
            return False
        self._send_qos(session, link, message, qos, retain, sub_ids, now)
        return True

    def _send_qos(
        self,
        session: Session,
        link: Link,
        message: Message,
        qos: int,
        retain: bool,
        sub_ids: tuple[int, ...],
        now: float,
    ) -> None:
        form = message.form(link.v5, qos, retain, sub_ids, now)
        if form.size > link.max_out:
            self.messages_dropped += 1
            self.dropped_too_large += 1
            return  # [MQTT-3.1.2-25]
        packet_id = link.conn.publish_prepared(form)
        assert packet_id is not None
        session.inflight_messages[packet_id] = message
        if session.recorder is not None:
            session.recorder.add_inflight(
                session.client_id, packet_id, message.stored(qos, retain, sub_ids)
            )
        self._hold(message)
        self._dirty[link.id] = None
        self.messages_sent += 1
        self.messages_sent_by_qos[qos] += 1

    # -- the memory budget ------------------------------------------------------------

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

    def _enqueue(self, session: Session, item: Pending) -> bool:
        """Queue for later, bounded by ``max_queued_messages``,
        ``max_queued_bytes`` and ``memory_limit``: drop the oldest queued QoS 0
        messages to make room, else drop a new QoS 0 message (at most once:
        True) or refuse a QoS 1/2 one (False; the publisher hears 0x97 in v5).
        Every message dropped or refused is counted."""
        message = item[0]
        size = message.size
        # _over_budget and _hold inlined: every message a full window holds
        # back comes through here.
        limit = self.config.memory_limit
        if limit is not None and not message.holds and self._held_bytes + size > limit:
            self.messages_dropped += 1
            return item[1] == 0
        pending = session.pending
        if not pending:
            pending = session.pending = deque()
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
            recorder = session.recorder
            for index in reversed(victims):
                dropped = pending[index][0]
                del pending[index]
                if recorder is not None:
                    recorder.remove_queued(session.client_id, index)
                session.queued_bytes -= dropped.size
                self._unhold(dropped)
            self.messages_dropped += len(victims)
        pending.append(item)
        recorder = session.recorder
        if recorder is not None:
            recorder.append_queued(session.client_id, message.stored(item[1], item[2], item[3]))
        session.queued_bytes += size
        if not message.holds:
            self._held_bytes += size
        message.holds += 1
        return True

    def _pump(self, session: Session, now: float) -> None:
        """Send queued messages while the client's window has room, then
        retained messages still owed (see _feed)."""
        link = session.link
        if link is None or link.finished:
            return
        conn = link.conn
        if conn.state is _CLOSED:
            return
        pending = session.pending
        authorizer = self.authorizer
        v5 = link.v5
        # Read once: each QoS 1/2 message sent below takes one place of it.
        window = conn.send_window
        recorder = session.recorder
        client_id = session.client_id
        while pending:
            message, qos, retain, sub_ids = pending[0]
            if (qos and not window) or conn.bytes_to_send + link.backlog >= link.max_unsent:
                # The window is full, or the output is above its high-water
                # mark: the rest waits (data_to_send pumps again).
                break
            pending.popleft()
            session.queued_bytes -= message.size
            expires_at = message.expires_at
            if expires_at is not None and now >= expires_at:
                self.dropped_expired += 1  # [MQTT-3.3.2-5]: not delivered
            elif authorizer is not None and not authorizer.may_receive(
                client_id, link.username, message.packet.topic
            ):
                # Checked again as it is delivered: the rights may have
                # changed (a reloaded ACL) since it was queued.
                self.messages_dropped += 1
                self.dropped_denied += 1
            elif qos:
                # _send_qos inlined: most QoS 1/2 messages of a busy client
                # go out here, one per acknowledgement.
                form = message.form(v5, qos, retain, sub_ids if v5 else (), now)
                if form.size <= link.max_out:
                    packet_id = conn.publish_prepared(form)
                    assert packet_id is not None
                    window -= 1
                    session.inflight_messages[packet_id] = message
                    if recorder is not None:
                        recorder.send_queued(client_id, packet_id)
                    self.messages_sent += 1
                    self.messages_sent_by_qos[qos] += 1
                    # The queue's hold on the message passes to the flow.
                    continue
                self.messages_dropped += 1  # [MQTT-3.1.2-25]
                self.dropped_too_large += 1
            else:
                form = message.form(v5, 0, retain, sub_ids if v5 else (), now)
                if form.size <= link.max_out:
                    conn.publish_prepared(form)
                    self.messages_sent += 1
                else:
                    self.messages_dropped += 1
                    self.dropped_too_large += 1
            if recorder is not None:
                recorder.remove_queued(client_id, 0)
            self._unhold(message)
        self._dirty[link.id] = None
        if not pending:
            session.pending = ()  # the deque is given back
        if not pending and session.feeds:
            # Retained messages owed to new subscriptions fill what room is left.
            self._feed(session, now)

    # -- retained messages --------------------------------------------------------------

    def _retain(self, message: Message, *, limited: bool = True) -> bool:
        """Store, replace or delete the retained message of a topic [MQTT-3.3.1-5/6].

        False (and nothing changes) when a ``limited`` message does not fit
        ``max_retained_messages`` / ``max_retained_bytes`` or its publisher's
        share of them.
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
