"""A client adapter's operations waiting for the server: :class:`PendingOperations`.

Part of :class:`~mqttproto.adapters._client_core.ClientCore`, split out.
Every ``publish``, ``subscribe`` and ``unsubscribe`` is a pending operation
with a :class:`Completion` until its acknowledgement comes (PUBACK or
PUBCOMP, SUBACK, UNSUBACK). Across connections:

- operations made while offline are held, bounded, until the connection is
  back, then sent in order;
- SUBSCRIBE and UNSUBSCRIBE belong to one connection (their packet ids die
  with it): when it ends they are held to be sent again, or fail;
- QoS 1/2 publishes stay in the session and are resent by the protocol core;
  one the server lost (:class:`~mqttproto.events.PublishDiscarded`) is
  published again as a new message when the client reconnects by itself;
- the filters the server granted are remembered, and subscribed again first
  when the server lost the session.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

import attrs

from ..client import ClientConnection
from ..enums import QoS, ReasonCode
from ..errors import LocalProtocolError
from ..events import (
    PublishAcknowledged,
    PublishDiscarded,
    SubscribeAcknowledged,
    UnsubscribeAcknowledged,
)
from ..packets import Subscription
from ._client_types import ClientError, Completion, PublishError, SubscribeError

__all__ = [
    "PendingOperation",
    "PendingOperations",
    "PendingPublish",
    "PendingSubscribe",
    "PendingUnsubscribe",
]


@attrs.define
class PendingPublish:
    """A ``publish()`` waiting for its acknowledgement (or for the connection)."""

    completion: Completion[PublishAcknowledged | None]
    topic: str
    payload: bytes
    qos: QoS
    retain: bool
    properties: dict[str, Any]


@attrs.define
class PendingSubscribe:
    """A ``subscribe()`` waiting for its SUBACK (or for the connection)."""

    completion: Completion[tuple[ReasonCode, ...]]
    subscriptions: tuple[Subscription, ...]
    properties: dict[str, Any]


@attrs.define
class PendingUnsubscribe:
    """An ``unsubscribe()`` waiting for its UNSUBACK (or for the connection)."""

    completion: Completion[tuple[ReasonCode, ...]]
    filters: tuple[str, ...]
    properties: dict[str, Any]


PendingOperation = PendingPublish | PendingSubscribe | PendingUnsubscribe


class PendingOperations:
    """The operations of one client that wait for the server or the connection."""

    def __init__(self) -> None:
        self._publishes: dict[int, PendingPublish] = {}
        self._subscribes: dict[int, PendingSubscribe] = {}
        self._unsubscribes: dict[int, PendingUnsubscribe] = {}
        self._offline: deque[PendingOperation] = deque()
        #: Sent first when a connection is accepted: subscriptions and QoS 1/2
        #: messages of a session the server lost, in their original order.
        self._replay: list[PendingOperation] = []
        #: Filters granted by the server, replayed when a session is lost.
        self.subscriptions: dict[str, Subscription] = {}

    def hold(self, op: PendingOperation, limit: int) -> None:
        """Keep *op* until the connection is back (at most *limit* held)."""
        if len(self._offline) >= limit:
            raise ClientError("too many operations waiting for the connection")
        self._offline.append(op)

    def issue(self, conn: ClientConnection, op: PendingOperation) -> None:
        """Send *op* on the connection; a refusal of the protocol core fails it."""
        try:
            if isinstance(op, PendingPublish):
                packet_id = conn.publish(
                    op.topic, op.payload, qos=op.qos, retain=op.retain, **op.properties
                )
                if packet_id is None:
                    op.completion.set_result(None)
                else:
                    self._publishes[packet_id] = op
            elif isinstance(op, PendingSubscribe):
                packet_id = conn.subscribe(op.subscriptions, **op.properties)
                self._subscribes[packet_id] = op
            else:
                packet_id = conn.unsubscribe(op.filters, **op.properties)
                self._unsubscribes[packet_id] = op
        except (LocalProtocolError, ValueError, TypeError) as exc:
            op.completion.set_error(exc)

    def take_ready(self) -> list[PendingOperation]:
        """What waited for the connection, replays first; now to be issued."""
        ops = [*self._replay, *self._offline]
        self._replay.clear()
        self._offline.clear()
        return ops

    def session_lost(self) -> None:
        """The server lost the session: subscribe again, before anything held
        offline is sent."""
        if self.subscriptions:
            subs = tuple(self.subscriptions.values())
            self._replay.append(PendingSubscribe(Completion(), subs, {}))

    def subscribing(self, topic_filter: str) -> bool:
        """Whether a SUBSCRIBE for *topic_filter* is under way or held."""
        ops: Iterable[PendingOperation] = (*self._subscribes.values(), *self._offline)
        return any(
            isinstance(op, PendingSubscribe)
            and any(s.topic_filter == topic_filter for s in op.subscriptions)
            for op in ops
        )

    # -- acknowledgements --------------------------------------------------------

    def acknowledged(self, event: PublishAcknowledged) -> None:
        op = self._publishes.pop(event.packet_id, None)
        if op is None:
            return
        if event.reason_code >= 0x80:
            op.completion.set_error(
                PublishError(
                    f"publish to {op.topic!r} refused: {event.reason_code.name}"
                    + (f": {event.reason_string}" if event.reason_string else ""),
                    event.reason_code,
                )
            )
        else:
            op.completion.set_result(event)

    def discarded(self, event: PublishDiscarded, *, republish: bool) -> None:
        op = self._publishes.pop(event.packet_id, None)
        if op is None:
            return
        if republish:
            # The server lost the session (or the message no longer fits):
            # publish it again as a new message, so that it is not lost.
            self._replay.append(op)
            return
        op.completion.set_error(PublishError(f"publish discarded: {event.reason}"))

    def subscribed(self, event: SubscribeAcknowledged) -> None:
        op = self._subscribes.pop(event.packet_id, None)
        if op is None:
            return
        codes = event.reason_codes
        for sub, code in zip(op.subscriptions, codes, strict=False):
            if code < 0x80:
                self.subscriptions[sub.topic_filter] = sub
        if codes and all(code >= 0x80 for code in codes):
            names = ", ".join(getattr(c, "name", str(c)) for c in codes)
            op.completion.set_error(SubscribeError(f"subscription refused: {names}", codes))
        else:
            op.completion.set_result(codes)

    def unsubscribed(self, event: UnsubscribeAcknowledged) -> None:
        op = self._unsubscribes.pop(event.packet_id, None)
        if op is None:
            return
        for topic_filter in op.filters:
            self.subscriptions.pop(topic_filter, None)
        op.completion.set_result(event.reason_codes)

    # -- the end of a connection, of the client ----------------------------------

    def connection_ended(self, error: BaseException | None) -> None:
        """SUBSCRIBE/UNSUBSCRIBE are per connection: their packet ids are gone.

        With *error* None they are held to be sent again on the next
        connection (QoS 1/2 publishes stay in the session and are resent, or
        published again); otherwise they fail with *error*.
        """
        lost: list[PendingOperation] = [*self._subscribes.values(), *self._unsubscribes.values()]
        self._subscribes.clear()
        self._unsubscribes.clear()
        if error is None:
            self._offline.extendleft(reversed(lost))
            return
        for op in lost:
            op.completion.set_error(error)

    def fail(self, error: BaseException) -> None:
        """Every pending operation fails with *error*."""
        pending: list[PendingOperation] = [
            *self._publishes.values(),
            *self._subscribes.values(),
            *self._unsubscribes.values(),
            *self._replay,
            *self._offline,
        ]
        self._replay.clear()
        self._publishes.clear()
        self._subscribes.clear()
        self._unsubscribes.clear()
        self._offline.clear()
        for op in pending:
            op.completion.set_error(error)
