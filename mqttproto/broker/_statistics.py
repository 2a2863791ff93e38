"""What the broker counts, read as one snapshot, and the ``$SYS`` tree made from it.

The counters are plain integers incremented where each thing happens (a
message received in ``_routing``/``_fanout``, bytes in
:meth:`Broker.receive_data` and :meth:`Broker.flush`, a connection in
``_lifecycle._set_link``); :meth:`Statistics.statistics` reads them at once
into a frozen :class:`BrokerStatistics`, which the HTTP listener's
``/metrics`` and the ``$SYS`` topics both format, so the two never disagree.

Dropped messages, by reason (the ``reason`` label of
``mqttproto_messages_dropped_total``):

- ``no_subscribers``: a message no session subscribed to (PUBACK 0x10 in
  MQTT 5), counted once per message;
- ``not_authorized``: a PUBLISH the ACL refused, or a delivery it refuses
  when the message leaves a queue (the rights may have been reloaded);
- ``too_large``: a delivery larger than the receiver's Maximum Packet Size
  [MQTT-3.1.2-25];
- ``expired``: a queued message whose Message Expiry Interval ran out before
  it could be delivered [MQTT-3.3.2-5];
- ``queue_full``: every other bound (``max_queued_messages``,
  ``max_queued_bytes``, ``max_unsent_bytes``, ``memory_limit``).

``$SYS`` follows mosquitto 2.0's names and units (``mosquitto(8)``, "BROKER
STATUS"); the load averages are its exponentially weighted per-minute rates,
updated each ``sys_interval``. ``messages/received`` and ``messages/sent``
count PUBLISH packets here, as ``publish/messages/*`` do (mosquitto counts
every packet); ``heap/*`` is not published (Python does not know it).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import attrs

from .._version import VERSION
from ..packets import PublishPacket
from ._message import Message

if TYPE_CHECKING:
    from ._retained import RetainedStore
    from ._router import Router
    from ._sessions import Link, Session

__all__ = ["DROP_REASONS", "BrokerStatistics", "Statistics"]

#: The ``reason`` label values of ``mqttproto_messages_dropped_total``.
DROP_REASONS = ("no_subscribers", "queue_full", "expired", "too_large", "not_authorized")

#: mosquitto's load-average topics: the counter each one is the rate of.
_LOADS = {
    "messages/received": "messages_received",
    "messages/sent": "messages_sent",
    "publish/dropped": "messages_dropped",
    "publish/received": "messages_received",
    "publish/sent": "messages_sent",
    "bytes/received": "bytes_received",
    "bytes/sent": "bytes_sent",
    "connections": "connections_total",
    "sockets": "sockets_total",
}
_WINDOWS = (("1min", 60.0), ("5min", 300.0), ("15min", 900.0))


@attrs.frozen
class BrokerStatistics:
    """The broker's counters and gauges at one instant (:meth:`Broker.statistics`)."""

    uptime: float
    clients_connected: int
    #: Sessions whose client is away (persistent sessions).
    clients_disconnected: int
    #: The most clients connected at once since the broker started.
    clients_maximum: int
    #: Sessions that expired while their client was away.
    clients_expired: int
    #: Connections accepted (CONNACK 0x00) since the broker started.
    connections_total: int
    #: Network connections opened (accepted or not).
    sockets_total: int
    messages_received: int
    messages_sent: int
    #: Messages received and sent at QoS 0, 1 and 2 (index = QoS).
    messages_received_by_qos: tuple[int, int, int]
    messages_sent_by_qos: tuple[int, int, int]
    #: ``$SYS/broker/publish/messages/dropped``: deliveries a bound dropped.
    messages_dropped: int
    #: Messages dropped, by reason (every name of :data:`DROP_REASONS`).
    dropped: dict[str, int]
    bytes_received: int
    bytes_sent: int
    subscriptions: int
    shared_subscriptions: int
    retained_messages: int
    #: Messages the broker holds: retained, queued and in flight.
    stored_messages: int


class Statistics:
    """The counting half of :class:`~mqttproto.broker.Broker`."""

    messages_received: int
    messages_sent: int
    messages_dropped: int
    _router: Router[Session]
    _retained: RetainedStore
    _sessions: dict[str, Session]
    _conns: dict[int, Link]
    _started_at: float | None

    if TYPE_CHECKING:

        def _retain(self, message: Message, *, limited: bool = True) -> bool: ...
        def _route(self, message: Message, now: float) -> tuple[int, int]: ...

    def _setup_statistics(self) -> None:
        self.messages_received_by_qos = [0, 0, 0]
        self.messages_sent_by_qos = [0, 0, 0]
        self.dropped_no_subscribers = 0
        self.dropped_not_authorized = 0
        #: Deliveries the ACL refused (part of messages_dropped, unlike the above).
        self.dropped_denied = 0
        self.dropped_too_large = 0
        self.dropped_expired = 0
        self.bytes_received = 0
        self.bytes_sent = 0
        self.clients_connected = 0
        self.clients_maximum = 0
        self.clients_expired = 0
        self.connections_total = 0
        self.sockets_total = 0
        #: The $SYS load averages: topic -> value, and the counters last time.
        self._loads: dict[str, float] = {}
        self._load_marks: dict[str, int] = {}
        self._load_at: float | None = None

    def statistics(self, now: float) -> BrokerStatistics:
        """The counters and gauges as they are at ``now``."""
        sessions = self._sessions.values()
        connected = sum(1 for s in sessions if s.link is not None)
        stored = len(self._retained) + sum(len(s.pending) + s.inflight_count for s in sessions)
        shared = sum(
            1 for s in sessions for sub in s.subscriptions.values() if sub.group is not None
        )
        received_qos12 = self.messages_received_by_qos[1] + self.messages_received_by_qos[2]
        sent_qos12 = self.messages_sent_by_qos[1] + self.messages_sent_by_qos[2]
        too_large = self.dropped_too_large
        dropped = {
            "no_subscribers": self.dropped_no_subscribers,
            "queue_full": self.messages_dropped - too_large - self.dropped_denied,
            "expired": self.dropped_expired,
            "too_large": too_large,
            "not_authorized": self.dropped_not_authorized + self.dropped_denied,
        }
        started = self._started_at
        return BrokerStatistics(
            uptime=0.0 if started is None else max(0.0, now - started),
            clients_connected=connected,
            clients_disconnected=len(self._sessions) - connected,
            clients_maximum=self.clients_maximum,
            clients_expired=self.clients_expired,
            connections_total=self.connections_total,
            sockets_total=self.sockets_total,
            messages_received=self.messages_received,
            messages_sent=self.messages_sent,
            messages_received_by_qos=(
                self.messages_received - received_qos12,
                self.messages_received_by_qos[1],
                self.messages_received_by_qos[2],
            ),
            messages_sent_by_qos=(
                self.messages_sent - sent_qos12,
                self.messages_sent_by_qos[1],
                self.messages_sent_by_qos[2],
            ),
            messages_dropped=self.messages_dropped,
            dropped=dropped,
            bytes_received=self.bytes_received,
            bytes_sent=self.bytes_sent,
            subscriptions=len(self._router),
            shared_subscriptions=shared,
            retained_messages=len(self._retained),
            stored_messages=stored,
        )

    def _publish_sys(self, now: float) -> None:
        """``$SYS/broker/...`` statistics, retained, so a new subscriber sees them."""
        for topic, value in self.sys_topics(now).items():
            message = Message(PublishPacket(topic, value.encode(), retain=True), now, None)
            self._retain(message, limited=False)
            self._route(message, now)

    def sys_topics(self, now: float) -> dict[str, str]:
        """The ``$SYS/broker/...`` topics and their payloads at ``now``, as
        mosquitto 2.0 names them; updates the load averages."""
        stats = self.statistics(now)
        topics: dict[str, Any] = {
            "version": f"mqttproto version {VERSION}",
            "uptime": f"{int(stats.uptime)} seconds",
            "clients/connected": stats.clients_connected,
            "clients/active": stats.clients_connected,
            "clients/disconnected": stats.clients_disconnected,
            "clients/inactive": stats.clients_disconnected,
            "clients/maximum": stats.clients_maximum,
            "clients/total": stats.clients_connected + stats.clients_disconnected,
            "clients/expired": stats.clients_expired,
            "messages/received": stats.messages_received,
            "messages/sent": stats.messages_sent,
            "messages/stored": stats.stored_messages,
            "publish/messages/received": stats.messages_received,
            "publish/messages/sent": stats.messages_sent,
            "publish/messages/dropped": stats.messages_dropped,
            "bytes/received": stats.bytes_received,
            "bytes/sent": stats.bytes_sent,
            "retained messages/count": stats.retained_messages,
            "subscriptions/count": stats.subscriptions,
            "shared_subscriptions/count": stats.shared_subscriptions,
            "store/messages/count": stats.stored_messages,
        }
        for name, value in self._update_loads(stats, now).items():
            topics[f"load/{name}"] = f"{value:.2f}"
        return {f"$SYS/broker/{name}": str(value) for name, value in topics.items()}

    def _update_loads(self, stats: BrokerStatistics, now: float) -> dict[str, float]:
        """mosquitto's load averages (sys_tree.c): per-minute rates, each
        smoothed with ``exp(-elapsed / window)``."""
        counters = {name: getattr(stats, field) for name, field in _LOADS.items()}
        last_at = self._load_at
        self._load_at = now
        marks, self._load_marks = self._load_marks, counters
        loads = self._loads
        elapsed = 0.0 if last_at is None else now - last_at
        for name, value in counters.items():
            for window, seconds in _WINDOWS:
                key = f"{name}/{window}"
                current = loads.get(key, 0.0)
                if elapsed > 0:
                    rate = (value - marks.get(name, value)) * 60.0 / elapsed
                    current = rate + math.exp(-elapsed / seconds) * (current - rate)
                loads[key] = current
        return dict(loads)
