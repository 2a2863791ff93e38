"""The input budget of the broker servers: what large incomplete packets may
hold across all connections (``BrokerConfig.max_buffered_input``).

A connection's reader holds at most one incomplete packet, and refuses one
larger than ``max_packet_size`` on its fixed header (before the body is
read). That bounds one connection; this bounds them all, against many
clients that each claim a large packet and send it slowly (or never):

- a packet larger than :data:`LARGE_INPUT` *reserves* its declared size as
  soon as its fixed header is read. Reserving the whole declared size, not
  the bytes so far, means that a packet admitted can always be completed:
  the budget never deadlocks with every connection half-way through;
- one that does not fit in what is left *waits*: its connection is not read
  from (the driver pauses it) until packets being received complete or
  their connections end, first come first served, so that a large packet
  is not passed over forever by smaller ones;
- unless nothing is reserved: then it is admitted whatever its size, so
  that a packet larger than the budget (but within ``max_packet_size``)
  still goes through, alone;
- smaller packets (nearly all MQTT traffic) never reserve nor wait.

So the memory held is at most the budget (or one packet, if larger), plus
:data:`LARGE_INPUT` and one read per connection. What the budget costs a
client that is kept waiting is time: a server that pauses a client stops
receiving its PINGREQ too, and a client kept waiting longer than its
keep-alive is disconnected by the broker (0x8D), which frees its place.

Pure bookkeeping, keyed by the driver's peers (any hashable); the driver
pauses and resumes reading as the answers say.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["LARGE_INPUT", "InputBudget"]

#: An incomplete packet larger than this reserves its declared size before
#: more of it is read. Smaller ones are never held: each connection may hold
#: this much beyond the budget (and one read).
LARGE_INPUT = 64 * 1024

K = TypeVar("K", bound=Hashable)


class InputBudget(Generic[K]):
    """Reservations of large incomplete packets against ``limit`` bytes.

    :param limit: the budget in bytes; None: no budget (nothing is ever held).
    """

    __slots__ = ("_held", "_reserved", "limit", "reserved")

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        #: The bytes reserved now (by packets being read).
        self.reserved = 0
        self._reserved: dict[K, int] = {}
        #: Waiting connections, in the order they came, with what they need.
        self._held: dict[K, int] = {}

    def is_held(self, key: K) -> bool:
        """Whether ``key`` waits for room: it is not to be read from."""
        return key in self._held

    def reservation(self, key: K) -> int:
        """What ``key`` has reserved (0: nothing)."""
        return self._reserved.get(key, 0)

    def claim(self, key: K, size: int) -> list[K]:
        """``key`` is receiving a packet of ``size`` bytes (its declared size;
        0: none incomplete). Returns the keys whose waiting changed (``key``
        itself, if it must now wait; others admitted as it freed room)."""
        need = size if size > LARGE_INPUT else 0
        if self.limit is None or need == self._reserved.get(key, 0):
            return []
        if self._held.get(key) == need:
            return []  # still waiting for the same packet, in its place
        changed = self.release(key)
        if need:
            if not self._held and (not self.reserved or self.reserved + need <= self.limit):
                self._reserved[key] = need
                self.reserved += need
            else:
                self._held[key] = need
                changed.append(key)
        return changed

    def release(self, key: K) -> list[K]:
        """``key`` is done (its packet complete, or its connection ending):
        give back what it reserved, or stop its wait. Returns the keys
        admitted in the room it freed (they may be read from again)."""
        self._held.pop(key, None)
        reserved = self._reserved.pop(key, 0)
        if not reserved:
            return []
        self.reserved -= reserved
        return self._admit()

    def _admit(self) -> list[K]:
        admitted = []
        held = self._held
        limit = self.limit
        assert limit is not None
        while held:
            key, need = next(iter(held.items()))
            if self.reserved and self.reserved + need > limit:
                break
            del held[key]
            self._reserved[key] = need
            self.reserved += need
            admitted.append(key)
        return admitted
