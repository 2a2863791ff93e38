"""Retained messages for a new subscription, paced by the client.

A subscription may match many retained messages (a ``#`` subscriber of a
broker holding 100,000). They are already stored, so they are not copied
into the session's bounded queue, where most would be dropped: each new
subscription that is owed retained messages gets a
:class:`~._retained.RetainedFeed`, a cursor over the retained store, and
the broker takes the next message from it whenever the client can take one:

- QoS 1/2 messages within the client's in-flight window (its Receive
  Maximum, at most ``max_inflight_messages``), so the next ones go as
  acknowledgements come back;
- any message only while the connection's unsent output is below
  ``max_unsent_bytes`` (the high-water mark), so the next ones go as the
  output drains (when the adapter takes it, reports a smaller backlog, or
  at the broker's timer, which is due at once while messages wait for
  output that was taken already).

Memory: the cursor holds a path through the trie, never the messages; a
window of messages is in flight (counted in ``memory_limit`` as any message
in flight is, but not refused by it: their bytes are the retained store's). Order: messages routed to the client as
they are published (live ones) are not held back: they go first, and
retained messages fill what room is left (MQTT 5.0 section 3.3.1.3 only
says retained messages are sent when the subscription is made
[MQTT-3.3.1-9], with the RETAIN flag set, which tells the client they are
stored values; the SUBACK goes before them). Within one topic the order of
messages is kept (section 4.6, [MQTT-4.6.0-5]): a topic on which a message
was routed to the subscription after it was made is skipped when the cursor
reaches it, since the client already has that newer message. A topic whose
retained message was deleted before its turn gets nothing.

A feed lives with the session: it pauses while the client is away and goes
on when a persistent session is resumed (it does not outlive the broker
process); it ends with the session, when the subscription is removed, and is
started again by a re-subscription with Retain Handling 0 [MQTT-3.8.4-4].
A re-subscription with Retain Handling 1 or 2 lets the delivery owed to the
subscription it replaces go on, with the new subscription's options. The
rights are checked as each message goes (``may_receive``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._state import ConnectionState
from ..config import BrokerConfig
from ._message import Message
from ._retained import RetainedFeed, RetainedStore
from ._router import Sub
from ._sessions import Link, Session

__all__ = ["Feeding"]

_CONNECTED = ConnectionState.CONNECTED


class Feeding:
    """The retained-message half of :class:`~mqttproto.broker.Broker`'s delivery."""

    config: BrokerConfig
    authorizer: Any
    messages_sent: int
    messages_sent_by_qos: list[int]
    messages_dropped: int
    dropped_too_large: int
    _retained: RetainedStore
    _dirty: dict[int, None]
    _conns: dict[int, Link]
    #: Feeds alive in every session together: while there is any, a routed
    #: message marks its topic in the retained store (``touch``).
    _feeding: int

    if TYPE_CHECKING:

        def _push_timer(self, when: float, kind: str, key: Any) -> None: ...

        def _pump(self, session: Session, now: float) -> None: ...

        def _hold(self, message: Message) -> None: ...

    def _feed_timer(self, link_id: int, now: float) -> None:
        """The "feed" timer: owed retained messages go on if the output drained."""
        link = self._conns.get(link_id)
        if link is None:
            return
        link.feed_due = False
        session = link.session
        if session is not None and session.feeds and not link.held:
            self._pump(session, now)

    def _start_feed(self, session: Session, full_filter: str, sub: Sub[Session]) -> None:
        """Owe ``sub``'s retained messages to ``session`` (restarting a feed
        of the same filter)."""
        self._stop_feed(session, full_filter)
        feeds = session.feeds
        if not feeds:
            feeds = session.feeds = []  # none kept while nothing is owed
        feeds.append(RetainedFeed(self._retained, full_filter, sub))
        self._feeding += 1

    def _stop_feed(self, session: Session, full_filter: str) -> None:
        feeds = session.feeds
        for index, feed in enumerate(feeds):
            if feed.filter == full_filter:
                assert isinstance(feeds, list)
                del feeds[index]
                self._feeding -= 1
                if not feeds:
                    session.feeds = ()
                return

    def _renew_feed(self, session: Session, full_filter: str, sub: Sub[Session]) -> None:
        """A re-subscription without retained messages: the feed of the
        subscription it replaces, if any, goes on with its options."""
        for feed in session.feeds:
            if feed.filter == full_filter:
                feed.sub = sub
                return

    def _drop_feeds(self, session: Session) -> None:
        self._feeding -= len(session.feeds)
        session.feeds = ()

    def _feed(self, session: Session, now: float) -> None:
        """Send the session's owed retained messages while the client can take them.

        Called when nothing waits in the session's queue (live messages go
        first): after SUBSCRIBE, an acknowledgement, the output draining,
        and the session being resumed.
        """
        link = session.link
        if link is None or link.finished or session.pending:
            return
        conn = link.conn
        if conn.state is not _CONNECTED:
            return
        feeds = session.feeds
        if not isinstance(feeds, list):
            return  # nothing owed
        authorizer = self.authorizer
        v5 = link.v5
        client_id = session.client_id
        window = conn.send_window
        sent = dropped = 0
        while feeds:
            if conn.bytes_to_send + link.backlog >= link.max_unsent:
                # Above the high-water mark: the output drains first. Taking
                # it (data_to_send) or a smaller backlog sends more; the timer
                # comes back in case the output was taken at once.
                if not link.feed_due:
                    link.feed_due = True
                    self._push_timer(now, "feed", link.id)
                break
            feed = feeds[0]
            sub = feed.sub
            if sub.qos and window <= 0:
                break  # the window is full: an acknowledgement comes first
            node = next(feed.nodes, None)
            if node is None:
                del feeds[0]
                self._feeding -= 1
                continue
            retained = node.message
            if retained is None or node.serial > feed.start:
                continue  # deleted, or superseded by a message routed since
            expires_at = retained.expires_at
            if expires_at is not None and now >= expires_at:
                continue  # [MQTT-3.3.2-5]
            packet = retained.packet
            if authorizer is not None and not authorizer.may_receive(
                client_id, link.username, packet.topic
            ):
                continue
            message = Message(packet, now, None)
            if expires_at is not None:
                # Forwarded with what is left of its interval [MQTT-3.3.2-6].
                message.expires_at = expires_at
                assert message.expiry is not None
                message.received_at = expires_at - message.expiry
            qos = sub.qos if sub.qos < packet.qos else int(packet.qos)
            sub_ids = () if sub.sub_id is None or not v5 else (sub.sub_id,)
            # The RETAIN flag set: sent because of a new subscription [MQTT-3.3.1-9].
            form = message.form(v5, qos, True, sub_ids, now)
            if form.size > link.max_out:
                dropped += 1  # [MQTT-3.1.2-25]
                continue
            packet_id = conn.publish_prepared(form)
            if packet_id is not None:
                self.messages_sent_by_qos[qos] += 1
                window -= 1
                # Counted in memory_limit while in flight, as every message
                # is, but never refused by it: the bytes are the retained
                # store's already, and the window bounds how many fly.
                session.inflight_messages[packet_id] = message
                if session.recorder is not None:
                    # In flight like any other: stored before it goes out.
                    session.recorder.add_inflight(
                        client_id, packet_id, message.stored(qos, True, sub_ids)
                    )
                self._hold(message)
            sent += 1
        if not feeds:
            session.feeds = ()
        if sent or dropped:
            self.messages_sent += sent
            self.messages_dropped += dropped
            self.dropped_too_large += dropped  # the one reason the feed drops for
            self._dirty[link.id] = None
