"""The QoS state of a client's session that outlives its network connections.

:class:`ServerSession` is what :class:`~mqttproto.server.ServerConnection`
keeps of the QoS 1/2 flows (the outgoing messages in flight and queued,
their packet identifiers, the QoS 2 identifiers received and not yet
released), and what the application carries from one connection of a
client to the next; :class:`InflightMessage` is how it shows a message in
flight.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from ._qos import MAX_PACKET_ID, InboundFlow, OutboundFlow, OutboundStage, PacketIdAllocator
from .errors import LocalProtocolError
from .packets import PublishPacket

__all__ = ["InflightMessage", "ServerSession"]


@attrs.frozen
class InflightMessage:
    """A QoS 1/2 message sent to the client and not yet acknowledged.

    ``packet`` is the PUBLISH as it went out (its own ``packet_id`` may be
    unset when it was prepared for many clients: ``packet_id`` is the one it
    carried). ``released``: a QoS 2 flow past PUBREC, whose PUBREL is what goes
    again on resume.
    """

    packet_id: int
    packet: PublishPacket
    released: bool = False


class ServerSession:
    """The QoS 1/2 state of one client's session, kept by the application
    between network connections (MQTT 5.0 section 4.1).

    Outgoing messages in flight and their packet identifiers, the outgoing
    messages waiting for room in the client's Receive Maximum, and the QoS 2
    identifiers received from the client whose PUBREL has not come
    [MQTT-4.3.3-10]. Give it to :meth:`ServerConnection.accept
    <mqttproto.server.ServerConnection.accept>` with ``session_present=True``
    and what was in flight is sent again [MQTT-4.4.0-1]; without a session a
    connection makes a new one (:attr:`ServerConnection.session
    <mqttproto.server.ServerConnection.session>`).

    :param max_queued: messages that may wait behind the client's window.
    """

    # The three parts are made by their first use: an idle session, or one
    # that only ever sees QoS 0, holds none of them (they cost 700 bytes
    # with their empty tables).
    __slots__ = ("_inbound", "_max_queued", "_outbound", "_packet_ids", "_send_quota")

    def __init__(self, *, max_queued: int = 1000) -> None:
        self._max_queued = max_queued
        self._send_quota = MAX_PACKET_ID
        self._packet_ids: PacketIdAllocator | None = None
        self._outbound: OutboundFlow | None = None
        self._inbound: InboundFlow | None = None

    @property
    def packet_ids(self) -> PacketIdAllocator:
        """The packet identifiers of the messages to the client."""
        packet_ids = self._packet_ids
        if packet_ids is None:
            packet_ids = self._packet_ids = PacketIdAllocator()
        return packet_ids

    @property
    def outbound(self) -> OutboundFlow:
        """The QoS 1/2 messages to the client, in flight and queued."""
        outbound = self._outbound
        if outbound is None:
            outbound = self._outbound = OutboundFlow(
                send_quota=self._send_quota, max_queued=self._max_queued
            )
        return outbound

    @property
    def inbound(self) -> InboundFlow:
        """The QoS 2 identifiers received from the client, awaiting PUBREL."""
        inbound = self._inbound
        if inbound is None:
            inbound = self._inbound = InboundFlow()
        return inbound

    @property
    def unused(self) -> bool:
        """Whether nothing was ever in flight in either direction (none of
        its parts was made): a new one would be the same."""
        return self._packet_ids is None and self._outbound is None and self._inbound is None

    @property
    def send_quota(self) -> int:
        """How many messages may be in flight at once (set at each accept)."""
        return self._send_quota

    @send_quota.setter
    def send_quota(self, quota: int) -> None:
        self._send_quota = quota
        if self._outbound is not None:
            self._outbound.send_quota = quota

    @property
    def releases(self) -> int:
        """How many flows to the client PUBREC moved past (see OutboundFlow.releases)."""
        outbound = self._outbound
        return 0 if outbound is None else outbound.releases

    @property
    def inflight(self) -> tuple[InflightMessage, ...]:
        """The messages in flight to the client, oldest first."""
        outbound = self._outbound
        if outbound is None:
            return ()
        return tuple(
            InflightMessage(m.packet_id, m.packet, m.stage is OutboundStage.RELEASED)
            for m in outbound.inflight.values()
        )

    @property
    def queued(self) -> tuple[PublishPacket, ...]:
        """QoS 1/2 messages waiting for room in the client's window, in order."""
        outbound = self._outbound
        return () if outbound is None else tuple(outbound.queue)

    @property
    def awaiting_release(self) -> tuple[int, ...]:
        """QoS 2 packet identifiers received from the client, waiting for PUBREL."""
        inbound = self._inbound
        return () if inbound is None else tuple(sorted(inbound.awaiting_release))

    def restore_inflight(
        self, packet_id: int, packet: PublishPacket, *, released: bool = False
    ) -> None:
        """Put back a message that was in flight (a session read from a store).

        :raises LocalProtocolError: the identifier is in use, or the packet is QoS 0.
        """
        if not packet.qos:
            raise LocalProtocolError("a QoS 0 message is never in flight")
        if packet_id in self.packet_ids:
            raise LocalProtocolError(f"packet identifier {packet_id} is already in use")
        outbound = self.outbound
        outbound.start(packet, packet_id)
        if released:
            outbound.inflight[packet_id].stage = OutboundStage.RELEASED
        self.packet_ids.reserve(packet_id)

    def restore_awaiting_release(self, packet_ids: Iterable[int]) -> None:
        """Put back QoS 2 identifiers received and not yet released."""
        self.inbound.restore(packet_ids)

    def discard_inflight(self, packet_id: int) -> bool:
        """Forget a message in flight, which will then never be sent again;
        False if there was none with that identifier."""
        outbound = self._outbound
        message = None if outbound is None else outbound.inflight.pop(packet_id, None)
        if message is None:
            return False
        self.packet_ids.release(packet_id)
        return True

    def clear(self) -> list[int]:
        """Forget everything; return the identifiers of the outgoing messages lost."""
        outbound = self._outbound
        lost = [] if outbound is None else outbound.discard()
        self._inbound = None
        if self._packet_ids is not None:
            self._packet_ids.clear()
        return lost

    def __len__(self) -> int:
        """Outgoing messages in flight or queued."""
        outbound = self._outbound
        return 0 if outbound is None else len(outbound)
