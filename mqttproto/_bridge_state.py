"""What a bridge remembers between its two connections, without I/O.

A bridge holds two MQTT client connections: the *local link*, a session on
this broker, and the *remote link*. A QoS 1/2 message crossing it is
acknowledged on the side it came from only once the other side has
acknowledged it (end to end), so nothing is lost when a link drops halfway:

- **out** (local to remote): the local broker's PUBLISH (local packet id
  ``L``) is published on the remote link (remote id ``R``); the remote
  PUBACK/PUBCOMP for ``R`` sends the local PUBACK/PUBREC for ``L``. Until
  then ``L`` stays unacknowledged in the local session, which the broker
  resends on the next local connection (the client role absorbs the
  resend of an id it still holds). If the remote broker loses the session
  (:class:`~mqttproto.events.PublishDiscarded` for ``R``), the message is
  published again from what :class:`Forwarding` kept.
- **in** (remote to local): the remote PUBLISH ``R`` is published on the
  local link as ``L``; the local acknowledgement of ``L`` acknowledges ``R``.

:class:`Backoff` says how long to wait before the next connection attempt,
and :class:`BridgeStatus` is what the bridge shows of itself.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter, OrderedDict, deque

import attrs

from .enums import ReasonCode
from .events import MessageReceived

__all__ = ["Backoff", "BridgeStatus", "EchoFilter", "Forwarding", "PendingOut"]


class Backoff:
    """Reconnection delays: ``base`` first, then doubling with jitter up to ``cap``.

    The *n*-th delay after the first is drawn uniformly between ``base``
    and ``min(cap, base * 2**n)`` ("equal jitter" on a bounded exponential),
    so that many edge brokers that lost the same central broker do not all
    come back in the same second. :meth:`reset` after a connection that worked.
    """

    def __init__(self, base: float, cap: float, rng: random.Random | None = None) -> None:
        if not 0 < base <= cap:
            raise ValueError(f"need 0 < base <= cap, not {base} and {cap}")
        self.base = base
        self.cap = cap
        self.attempts = 0
        self._rng = rng if rng is not None else random.Random()

    def next_delay(self) -> float:
        """The delay before the next attempt (and count one more failure)."""
        attempts = self.attempts
        self.attempts = attempts + 1
        if attempts == 0:
            return self.base
        high = min(self.cap, self.base * 2.0 ** min(attempts, 32))
        return self._rng.uniform(self.base, high) if high > self.base else self.base

    def reset(self) -> None:
        self.attempts = 0


@attrs.frozen
class PendingOut:
    """A QoS 1/2 message on its way out, held until the remote broker acknowledges it."""

    local_id: int
    message: MessageReceived
    topic: str
    qos: int


class Forwarding:
    """The packet ids of the messages in flight across the bridge (see the module)."""

    def __init__(self) -> None:
        #: Local packet id -> the message going out (ordered: resend order).
        self.outbound: OrderedDict[int, PendingOut] = OrderedDict()
        #: Remote packet id -> local packet id, for messages going out.
        self._out_by_remote: dict[int, int] = {}
        #: Local packet id -> remote packet id, for messages coming in.
        self._in_by_local: dict[int, int] = {}
        #: Local packet ids the remote broker acknowledged while the local link was down.
        self.local_acks_due: list[tuple[int, ReasonCode]] = []

    def __len__(self) -> int:
        return len(self.outbound) + len(self._in_by_local)

    # -- out --------------------------------------------------------------------

    def holds_local(self, local_id: int) -> bool:
        """Whether local message ``local_id`` is already on its way out."""
        return local_id in self.outbound

    def sent_out(self, pending: PendingOut, remote_id: int) -> None:
        self.outbound[pending.local_id] = pending
        self._out_by_remote[remote_id] = pending.local_id

    def remote_acknowledged(self, remote_id: int) -> int | None:
        """The remote broker completed ``remote_id``: the local id to acknowledge."""
        local_id = self._out_by_remote.pop(remote_id, None)
        if local_id is not None:
            self.outbound.pop(local_id, None)
        return local_id

    def remote_discarded(self, remote_id: int) -> PendingOut | None:
        """The remote session lost ``remote_id``: the message to publish again."""
        local_id = self._out_by_remote.pop(remote_id, None)
        if local_id is None:
            return None
        return self.outbound.pop(local_id, None)

    # -- in ---------------------------------------------------------------------

    def sent_in(self, local_id: int, remote_id: int) -> None:
        self._in_by_local[local_id] = remote_id

    def local_acknowledged(self, local_id: int) -> int | None:
        """The local broker completed ``local_id``: the remote id to acknowledge."""
        return self._in_by_local.pop(local_id, None)

    def local_discarded(self, local_id: int) -> int | None:
        """The local session lost ``local_id`` (never delivered): its remote id."""
        return self._in_by_local.pop(local_id, None)

    # -- sessions ---------------------------------------------------------------

    def local_session_lost(self) -> None:
        """The local broker did not resume the bridge's session: the local ids
        of messages going out mean nothing any more (those messages are gone
        from the local side; the remote side finishes them on its own)."""
        self.outbound.clear()
        self._out_by_remote.clear()
        self.local_acks_due.clear()


class EchoFilter:
    """The copies of its own messages an MQTT 3.1.1 remote broker sends back.

    With MQTT 5 the bridge subscribes with No Local, and mosquitto honours
    the bridge flag of 3.1.1 (``try_private``); a 3.1.1 broker that refused
    the flag sends the bridge every message it published on a ``both``
    topic. The bridge remembers what it sent on topics it also receives
    (a digest of topic and payload, the last ``limit`` of them) and drops
    one message coming back with the same topic and payload for each.
    """

    def __init__(self, limit: int = 1000) -> None:
        self.limit = limit
        self._order: deque[bytes] = deque()
        self._counts: Counter[bytes] = Counter()

    @staticmethod
    def _key(topic: str, payload: bytes) -> bytes:
        return hashlib.blake2b(topic.encode() + b"\0" + payload, digest_size=16).digest()

    def sent(self, topic: str, payload: bytes) -> None:
        key = self._key(topic, payload)
        self._order.append(key)
        self._counts[key] += 1
        if len(self._order) > self.limit:
            self._forget(self._order.popleft())

    def is_echo(self, topic: str, payload: bytes) -> bool:
        """Whether this is a copy of a message sent (and forget one such)."""
        key = self._key(topic, payload)
        if not self._counts.get(key):
            return False
        self._forget(key)
        self._order.remove(key)
        return True

    def _forget(self, key: bytes) -> None:
        self._counts[key] -= 1
        if not self._counts[key]:
            del self._counts[key]

    def __len__(self) -> int:
        return len(self._order)


@attrs.frozen
class BridgeStatus:
    """What a bridge shows of itself (``BrokerServer.bridges``, ``/metrics``).

    :ivar name: the bridge's name.
    :ivar state: ``"connecting"``, ``"connected"``, ``"down"`` (waiting to
        reconnect) or ``"stopped"``.
    :ivar address: ``host:port`` connected to, or last tried.
    :ivar last_error: why the last connection ended or failed (None: none has).
    :ivar connects: connections established so far.
    :ivar messages_out: messages forwarded to the remote broker.
    :ivar messages_in: messages brought in from the remote broker.
    :ivar messages_dropped: messages the bridge could not forward (QoS 0
        while down, too large for the other side, refused by it).
    :ivar in_flight: QoS 1/2 messages crossing the bridge, not yet acknowledged.
    """

    name: str
    state: str
    address: str
    last_error: str | None
    connects: int
    messages_out: int
    messages_in: int
    messages_dropped: int
    in_flight: int
