"""QoS 1 and 2 bookkeeping shared by the client and broker roles.

- :class:`PacketIdAllocator` hands out packet identifiers for one direction.
- :class:`OutboundFlow` tracks the PUBLISH packets this side sends at QoS 1
  and 2: the in-flight window bounded by the peer's Receive Maximum, the
  ordered queue behind it, and the packets to resend when a session resumes.
- :class:`InboundFlow` tracks the QoS 1 and 2 PUBLISH packets this side
  receives: acknowledgements not yet sent, QoS 2 packet identifiers held
  until PUBREL (the exactly-once deduplication), and our own Receive Maximum.

Nothing here encodes or sends: the connection asks what to do and does it.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Set
from types import MappingProxyType

import attrs

from .enums import QoS, ReasonCode
from .errors import LocalProtocolError, ReceiveMaximumExceeded, RemoteProtocolError
from .packets import PublishPacket, PubRelPacket

__all__ = [
    "MAX_PACKET_ID",
    "NO_PACKET_IDS",
    "InboundFlow",
    "OutboundFlow",
    "OutboundMessage",
    "OutboundStage",
    "PacketIdAllocator",
]

MAX_PACKET_ID = 65535

#: What an :class:`InboundFlow` shows while it holds nothing: shared, so that
#: an idle session keeps no empty table (an empty set costs 216 bytes, an
#: empty dict 64).
NO_PACKET_IDS: frozenset[int] = frozenset()
_NO_ACKS: Mapping[int, QoS] = MappingProxyType({})


class PacketIdAllocator:
    """Non-zero 16-bit packet identifiers, each in use at most once [MQTT-2.2.1-3].

    Identifiers are handed out round-robin, so a just-released identifier is
    not reused at once: a late duplicate acknowledgement cannot be mistaken
    for the answer to a new packet.

    The server role's QoS 1 hot paths (``ServerFlows.publish_prepared`` and
    ``_on_puback``, and the broker's run of PUBACKs, ``broker._acks``) do
    :meth:`allocate` and :meth:`release` on ``_next`` and ``_used``
    themselves: a change here must be made there too.
    """

    __slots__ = ("_next", "_used")

    def __init__(self) -> None:
        self._next = 1
        #: The identifiers in use, as dict keys: an empty dict costs 64
        #: bytes where an empty set costs 216, on every idle connection.
        self._used: dict[int, None] = {}

    def allocate(self) -> int:
        """A free identifier, now marked in use.

        :raises LocalProtocolError: when all 65,535 are in use.
        """
        packet_id = self.peek()
        self._used[packet_id] = None
        self._next = packet_id % MAX_PACKET_ID + 1
        return packet_id

    def peek(self) -> int:
        """The identifier :meth:`allocate` will return next, without taking it."""
        used = self._used
        if len(used) >= MAX_PACKET_ID:
            raise LocalProtocolError("all 65535 packet identifiers are in use")
        packet_id = self._next
        while packet_id in used:
            packet_id = packet_id % MAX_PACKET_ID + 1
        return packet_id

    def reserve(self, packet_id: int) -> None:
        """Mark an identifier restored from a stored session as in use."""
        self._used[packet_id] = None

    def release(self, packet_id: int) -> None:
        self._used.pop(packet_id, None)

    def clear(self) -> None:
        self._used.clear()

    def __contains__(self, packet_id: object) -> bool:
        return packet_id in self._used

    def __len__(self) -> int:
        return len(self._used)


class OutboundStage(enum.Enum):
    """Where a QoS 1/2 PUBLISH this side sent is in its handshake."""

    #: Sent; waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    PUBLISHED = "published"
    #: QoS 2 only: PUBREC received and PUBREL sent; waiting for PUBCOMP.
    RELEASED = "released"


class OutboundMessage:
    """One QoS 1/2 PUBLISH in flight, as it was first sent (full topic, no alias).

    ``packet`` may lack its identifier (a message prepared once for many
    connections); ``packet_id`` is the one it went out with. A plain slotted
    class rather than attrs: one is made per message sent (by
    ``ServerFlows.publish_prepared`` and ``broker._acks`` without calling
    the class: a new slot must be set there too).
    """

    __slots__ = ("packet", "packet_id", "stage")

    def __init__(
        self,
        packet: PublishPacket,
        stage: OutboundStage = OutboundStage.PUBLISHED,
        packet_id: int | None = None,
    ) -> None:
        self.packet = packet
        self.stage = stage
        if packet_id is None:
            packet_id = packet.packet_id
            assert packet_id is not None
        self.packet_id: int = packet_id

    def __repr__(self) -> str:
        return f"OutboundMessage({self.packet_id}, {self.packet!r}, {self.stage})"


class OutboundFlow:
    """QoS 1/2 PUBLISH packets this side sends, in order.

    At most :attr:`send_quota` of them are unacknowledged at once (the peer's
    Receive Maximum, [MQTT-3.3.4-7]); the rest wait in a bounded queue and are
    released, oldest first, as acknowledgements free the window.
    """

    __slots__ = ("inflight", "max_queued", "queue", "releases", "send_quota")

    def __init__(self, *, send_quota: int = MAX_PACKET_ID, max_queued: int = 1000) -> None:
        self.send_quota = send_quota
        self.max_queued = max_queued
        #: How many flows PUBREC moved to RELEASED so far: an owner that
        #: records the state (a broker's durable store) sees that it changed
        #: without looking at every flow.
        self.releases = 0
        #: packet id -> message, in the order first sent (dicts keep order).
        self.inflight: dict[int, OutboundMessage] = {}
        #: Made by the first message that waits, dropped once none does: an
        #: empty deque costs 760 bytes, and most connections never queue.
        self.queue: deque[PublishPacket] | tuple[()] = ()

    def __len__(self) -> int:
        return len(self.inflight) + len(self.queue)

    def has_room(self) -> bool:
        """Whether a new message may go out now rather than queue (order kept)."""
        return not self.queue and len(self.inflight) < self.send_quota

    def check_queue_room(self) -> None:
        """Raise :class:`LocalProtocolError` if one more message cannot queue."""
        if len(self.queue) >= self.max_queued:
            raise LocalProtocolError(
                f"the queue of {self.max_queued} messages waiting for the in-flight window is full"
            )

    def start(self, packet: PublishPacket, packet_id: int | None = None) -> None:
        """Record ``packet`` (QoS 1/2) as sent with ``packet_id`` (by default
        its own)."""
        message = OutboundMessage(packet, OutboundStage.PUBLISHED, packet_id)
        self.inflight[message.packet_id] = message

    def enqueue(self, packet: PublishPacket) -> None:
        self.check_queue_room()
        queue = self.queue
        if not queue:
            queue = self.queue = deque()
        queue.append(packet)

    def release_queued(self) -> Iterator[PublishPacket]:
        """Yield queued packets while the window has room; each is then in flight."""
        queue = self.queue
        if not queue:
            return
        while queue and len(self.inflight) < self.send_quota:
            packet = queue.popleft()
            self.start(packet)
            yield packet
        if not queue:
            self.queue = ()

    def on_puback(self, packet_id: int) -> OutboundMessage | None:
        """PUBACK received: the QoS 1 flow ends. None for an unknown identifier."""
        message = self.inflight.get(packet_id)
        if message is None:
            return None
        if message.packet.qos != QoS.AT_LEAST_ONCE:
            raise RemoteProtocolError(f"PUBACK for packet {packet_id}, a QoS 2 PUBLISH")
        del self.inflight[packet_id]
        return message

    def on_pubrec(self, packet_id: int, reason_code: ReasonCode) -> OutboundMessage | None:
        """PUBREC received: the flow moves to PUBREL, or ends on a failure code.

        Returns None for an identifier that is not awaiting PUBREC.
        """
        message = self.inflight.get(packet_id)
        if message is None:
            return None
        if message.packet.qos != QoS.EXACTLY_ONCE:
            raise RemoteProtocolError(f"PUBREC for packet {packet_id}, a QoS 1 PUBLISH")
        if message.stage is OutboundStage.RELEASED:
            # A repeated PUBREC (the peer resent it): PUBREL goes again, the
            # caller sends it; nothing changes here.
            return message
        if reason_code >= 0x80:
            # A failed PUBREC ends the flow; no PUBREL follows [MQTT-4.3.3-4].
            del self.inflight[packet_id]
        else:
            message.stage = OutboundStage.RELEASED
            self.releases += 1
        return message

    def on_pubcomp(self, packet_id: int) -> OutboundMessage | None:
        """PUBCOMP received: the QoS 2 flow ends. None if none was awaited."""
        message = self.inflight.get(packet_id)
        if message is None or message.stage is not OutboundStage.RELEASED:
            return None
        del self.inflight[packet_id]
        return message

    def resend(self) -> list[PublishPacket | PubRelPacket]:
        """What to send again when a session resumes, in the original order.

        Unacknowledged PUBLISH go again with DUP set; QoS 2 flows past PUBREC
        go again as PUBREL [MQTT-4.4.0-1].
        """
        packets: list[PublishPacket | PubRelPacket] = []
        for packet_id, message in self.inflight.items():
            if message.stage is OutboundStage.RELEASED:
                packets.append(PubRelPacket(packet_id))
            else:
                packet = message.packet
                if not packet.duplicate or packet.packet_id != packet_id:
                    packet = message.packet = attrs.evolve(
                        packet, duplicate=True, packet_id=packet_id
                    )
                packets.append(packet)
        return packets

    def discard(self) -> list[int]:
        """Forget every message, in flight or queued; return their packet ids."""
        ids = list(self.inflight)
        ids.extend(p.packet_id for p in self.queue if p.packet_id is not None)
        self.inflight.clear()
        self.queue = ()
        return ids


class InboundFlow:
    """QoS 1/2 PUBLISH packets this side receives.

    ``unacked`` holds messages delivered to the application whose PUBACK or
    PUBREC has not been sent (manual acknowledgement). ``awaiting_release``
    holds QoS 2 identifiers between PUBREC and PUBREL: a PUBLISH with such an
    identifier is a retransmission and is not delivered again
    [MQTT-4.3.3-9]. Both count against our Receive Maximum [MQTT-3.3.4-9].
    Both are read-only views: their tables are made by the first identifier
    held and given back when the last one goes (most sessions never hold one).
    """

    __slots__ = ("_awaiting", "_unacked", "receive_maximum")

    def __init__(self, *, receive_maximum: int = MAX_PACKET_ID) -> None:
        self.receive_maximum = receive_maximum
        self._unacked: dict[int, QoS] | None = None
        self._awaiting: set[int] | None = None

    @property
    def unacked(self) -> Mapping[int, QoS]:
        """Packet id -> QoS of the messages awaiting the application's ack."""
        unacked = self._unacked
        return _NO_ACKS if unacked is None else unacked

    @property
    def awaiting_release(self) -> Set[int]:
        """The QoS 2 packet ids received and not yet released by PUBREL."""
        awaiting = self._awaiting
        return NO_PACKET_IDS if awaiting is None else awaiting

    def in_use(self) -> int:
        return len(self.unacked) + len(self.awaiting_release)

    def is_duplicate(self, packet_id: int) -> bool:
        """Whether a PUBLISH with this id is one already being handled."""
        return packet_id in self.awaiting_release or packet_id in self.unacked

    def check_quota(self, enforce: bool) -> None:
        """Raise :class:`ReceiveMaximumExceeded` if a new QoS 1/2 PUBLISH overflows."""
        if enforce and self.in_use() >= self.receive_maximum:
            raise ReceiveMaximumExceeded(
                f"more than {self.receive_maximum} unacknowledged QoS 1/2 PUBLISH received"
                " [MQTT-3.3.4-9]"
            )

    def hold(self, packet_id: int, qos: QoS) -> None:
        """A new message awaits the application's acknowledgement."""
        unacked = self._unacked
        if unacked is None:
            unacked = self._unacked = {}
        unacked[packet_id] = qos

    def acknowledge(self, packet_id: int, reason_code: ReasonCode) -> QoS:
        """The application acknowledged; return the QoS to answer for.

        :raises LocalProtocolError: if nothing with that id awaits an ack.
        """
        unacked = self._unacked
        qos = None if unacked is None else unacked.pop(packet_id, None)
        if qos is None:
            raise LocalProtocolError(
                f"no received message with packet id {packet_id} awaits an ack"
            )
        if not unacked:
            self._unacked = None
        if qos == QoS.EXACTLY_ONCE and reason_code < 0x80:
            self.received_qos2(packet_id)
        return qos

    def received_qos2(self, packet_id: int) -> None:
        """A QoS 2 identifier awaits PUBREL (its PUBREC was sent)."""
        awaiting = self._awaiting
        if awaiting is None:
            awaiting = self._awaiting = set()
        awaiting.add(packet_id)

    def restore(self, packet_ids: Iterable[int]) -> None:
        """Put back QoS 2 identifiers awaiting PUBREL (a stored session)."""
        for packet_id in packet_ids:
            self.received_qos2(packet_id)

    def release(self, packet_id: int) -> bool:
        """PUBREL received; False when the id was not awaiting it."""
        awaiting = self._awaiting
        if awaiting is None or packet_id not in awaiting:
            return False
        awaiting.discard(packet_id)
        if not awaiting:
            self._awaiting = None
        return True

    def discard(self) -> None:
        self._unacked = None
        self._awaiting = None
