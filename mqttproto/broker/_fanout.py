"""The QoS 0 fan-out of :class:`~mqttproto.broker.Broker`: the hot path.

A plain QoS 0 message (no retain flag, no expiry, no shared group, no
authorizer) goes out at QoS 0 whatever was granted [MQTT-3.8.4-8], with the
retain flag clear [MQTT-3.3.1-12], so every connected client of one protocol
version gets the same bytes: one :class:`~mqttproto.codec.PreparedPublish`
per version, handed to each connection's
:meth:`~mqttproto.server.ServerConnection.publish_prepared`.

Which connections those are depends only on the route and on which sessions
are connected, so it is worked out once and kept with the cached route as a
:class:`Plan`, until a session connects or goes (the plan's ``epoch``) or a
subscription changes (the router drops its cached routes). A topic that
reaches one plain subscription has no plan: its session's connection is read
as the message goes. The targets the
plan cannot take as alike (a session away, subscription identifiers, No
Local) go through the general delivery, one by one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._codec_common import PLAIN_PUBLISH as _PLAIN_PUBLISH
from ..events import MessageReceived
from ..packets import PublishPacket
from ._message import Message, prepared_as_received
from ._retained import RetainedStore
from ._router import Route, Router, Sub, Target
from ._sessions import Link, Session

__all__ = ["FanOut", "Plan"]


class Plan:
    """The connected targets of a route that all take a QoS 0 message alike,
    by protocol version, and the rest."""

    __slots__ = ("epoch", "groups", "others")

    def __init__(self, route: Route[Session], epoch: int) -> None:
        self.epoch = epoch
        v3: list[Link] = []
        v5: list[Link] = []
        self.others: list[Target[Session]] = []
        for target in route.targets:
            link = target.session.link
            if (
                link is None
                or not target.has_local
                # The copy an MQTT 5 client gets carries its identifiers
                # [MQTT-3.3.4-3], which may differ for its own messages.
                or (link.v5 and (target.sub_ids or target.local_sub_ids))
            ):
                self.others.append(target)
            elif link.v5:
                v5.append(link)
            else:
                v3.append(link)
        #: ``(links, v5)`` for each version with links.
        self.groups = [(links, is_v5) for links, is_v5 in ((v3, False), (v5, True)) if links]


class FanOut:
    """The QoS 0 fan-out half of the broker's routing."""

    authorizer: Any
    messages_received: int
    messages_sent: int
    messages_dropped: int
    dropped_no_subscribers: int
    dropped_too_large: int
    _router: Router[Session]
    _retained: RetainedStore
    _feeding: int
    _dirty: dict[int, None]
    #: Counts the times a session's connection changed: a plan made before
    #: the last change is made anew.
    _plan_epoch: int

    if TYPE_CHECKING:

        def _client_publish(self, link: Link, event: MessageReceived, now: float) -> None: ...

        def _deliver(
            self,
            session: Session,
            message: Message,
            qos: int,
            retain: bool,
            sub_ids: tuple[int, ...],
            now: float,
        ) -> bool: ...

    def _on_message(self, link: Link, event: MessageReceived, now: float) -> None:
        """A client's message (the broker's MessageReceived handler): a plain
        QoS 0 one to plain subscriptions is fanned out here; any other goes
        through the checks, the retained store and the acknowledgement of
        ``_client_publish``."""
        packet = event.packet
        fields = packet.__dict__
        # Plain: QoS 0, no retain flag, no property (no expiry), as decoded
        # (see _codec_common.PLAIN_PUBLISH). Clients may not publish to $SYS;
        # _client_publish says no.
        if (
            len(fields) != _PLAIN_PUBLISH
            or self.authorizer is not None
            or fields["topic"][0] == "$"
        ):
            self._client_publish(link, event, now)
            return
        topic = fields["topic"]
        router = self._router
        # The route cache, read first: one dict lookup for a known topic.
        route = router._cache.get(topic)
        if route is None:
            # Then the topics one plain subscription reaches, then the tree.
            one = router._single.get(topic)
            if one is None:
                found = router.resolve(topic)
                if type(found) is Sub:
                    one = found
                else:
                    route = found  # type: ignore[assignment]  # not a Sub: a Route
            if one is not None:
                self._to_one(link, packet, one, now)
                return
        assert route is not None
        if route.groups:
            self._client_publish(link, event, now)
            return
        self.messages_received += 1
        if not route.targets:
            self.dropped_no_subscribers += 1
            return
        if self._feeding:
            # Retained messages still owed on this topic are superseded.
            self._retained.touch(topic)
        # The fan-out, inline: this runs for every message.
        plan = route.plan
        if plan is None or plan.epoch != self._plan_epoch:
            plan = route.plan = Plan(route, self._plan_epoch)
        sent = dropped = 0
        dirty = self._dirty
        for links, v5 in plan.groups:
            form = prepared_as_received(packet, v5)
            size = form.size
            for to in links:
                conn = to.conn
                # Dropped if too large for the client [MQTT-3.1.2-25], and so
                # is one above the connection's max_unsent_bytes high-water mark.
                if size <= to.max_out and conn.bytes_to_send + to.backlog < to.max_unsent:
                    conn.publish_prepared(form)
                    dirty[to.id] = None
                    sent += 1
                else:
                    dropped += 1
                    if size > to.max_out:
                        self.dropped_too_large += 1
        if plan.others:
            self._fan_out_others(packet, link.client_id, plan.others, now)
        self.messages_sent += sent
        if dropped:
            self.messages_dropped += dropped

    def _to_one(self, link: Link, packet: PublishPacket, sub: Sub[Session], now: float) -> None:
        """A plain QoS 0 message to the one plain subscription of its topic:
        no plan (nothing is kept per topic), the session's link is read as
        the message goes."""
        self.messages_received += 1
        if self._feeding:
            self._retained.touch(packet.topic)
        to = sub.session.link
        if to is None or sub.no_local or (to.v5 and sub.sub_id is not None):
            self._fan_out_others(packet, link.client_id, [Target.of(sub)], now)
            return
        # The loop of _on_message for one link.
        form = prepared_as_received(packet, to.v5)
        conn = to.conn
        if form.size <= to.max_out and conn.bytes_to_send + to.backlog < to.max_unsent:
            conn.publish_prepared(form)
            self._dirty[to.id] = None
            self.messages_sent += 1
        else:
            self.messages_dropped += 1
            if form.size > to.max_out:
                self.dropped_too_large += 1

    def _fan_out_others(
        self, packet: PublishPacket, origin: str, targets: list[Target[Session]], now: float
    ) -> None:
        """The targets a plan could not take as alike, one by one."""
        message = Message(packet, now, origin)
        for target in targets:
            session = target.session
            if session.client_id == origin:
                if not target.has_local:
                    continue  # [MQTT-3.8.3-3] No Local
                sub_ids = target.local_sub_ids
            else:
                sub_ids = target.sub_ids
            self._deliver(session, message, 0, False, sub_ids, now)
