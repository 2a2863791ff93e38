"""A subscriber's run of PUBACKs, handled in one call: the other half of a
QoS 1 fan-out.

A client that takes QoS 1 messages answers each with a 4-byte PUBACK, and
most of its reads hold nothing else. Handled as any packet, each PUBACK is
a packet object, a :class:`~mqttproto.events.PublishAcknowledged` from the
connection and a call of the broker's handler, which pumps the session's
queue; together they cost more than the work they do. When a read is
nothing but such PUBACKs (see ``ServerConnection._plain_pubacks``), the
broker does that work here, for each packet id in turn and in the same
order as the events would: the connection's flow ends (its in-flight entry
and packet id released), then the session's (its message's hold on the
memory budget, the store's record), then the session's queue fills the
room made [MQTT-4.3.2-4]. An id not in flight is a late duplicate and
changes nothing, as before. Anything the run does not cover (a PUBACK for
a QoS 2 message, a queue in the connection itself) stops it there: the rest
of the bytes go the usual way, as if the client had sent them in a read
of their own, which the connection answers the same.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._qos import MAX_PACKET_ID, OutboundMessage, OutboundStage
from ..codec import packet_id_bytes
from ._sessions import Link

__all__ = ["Acks"]

# An OutboundMessage made without a class call, as publish_prepared does.
_new_outbound = object.__new__
_PUBLISHED = OutboundStage.PUBLISHED


class Acks:
    """The PUBACK runs of :class:`~mqttproto.broker.Broker`."""

    authorizer: Any
    messages_sent: int
    messages_sent_by_qos: list[int]
    _held_bytes: int

    if TYPE_CHECKING:
        from ._sessions import Session

        def _pump(self, session: Session, now: float) -> None: ...

    def _puback_run(self, link: Link, data: bytes, now: float) -> int:
        """Handle the PUBACKs that begin ``data``; how many bytes were
        handled (0: none, ``data`` is not a run of plain PUBACKs)."""
        session = link.session
        if session is None:
            return 0
        conn = link.conn
        ids = conn._plain_pubacks(data, now)
        if ids is None:
            return 0
        flows = conn._session
        outbound = flows._outbound
        ids_in_use = flows._packet_ids
        if outbound is None or ids_in_use is None:
            return len(data)  # nothing in flight: every PUBACK is a late duplicate
        inflight = outbound.inflight
        used = ids_in_use._used
        recorder = session.recorder
        client_id = session.client_id
        # The store hears of the flows ended and the messages sent from the
        # queue once per run, ends first, and before anything else records
        # for the session (_pump). An identifier sent again is one ended
        # before it (never one still to end); a flow sent in the run and
        # ended in it too (a stray PUBACK for the identifier just given
        # out) is told in its order.
        ended: list[int] = []
        sent_ids: list[int] = []
        authorizer = self.authorizer
        v5 = link.v5
        # publish_prepared's QoS 1/2 path is inlined below for a client
        # without topic aliases (the window and the sizes checked here).
        aliasing = conn._aliasing
        sent_by_qos = self.messages_sent_by_qos
        done = 0
        spare: OutboundMessage | None = None
        try:
            for packet_id in ids:
                # ServerConnection._on_puback, the event and _on_acknowledged,
                # one after the other as the events would have them.
                sent = inflight.get(packet_id)
                if sent is None:
                    done += 4
                    continue  # a late duplicate: nothing to end
                if sent.packet.qos != 1 or outbound.queue:
                    break  # QoS 2 (a protocol error), or the connection queues: the usual way
                del inflight[packet_id]
                spare = sent  # the flow's record, taken again by the next one sent
                used.pop(packet_id, None)
                if not used:  # idle: the tables a burst grew are given back
                    inflight.clear()
                    used.clear()
                done += 4
                held = session._inflight
                message = None if held is None else held.pop(packet_id, None)
                if recorder is not None:
                    if sent_ids:
                        # Identifiers are given out in turn: one sent in the run
                        # is from the first of them to the next to give out.
                        low = sent_ids[0]
                        high = ids_in_use._next
                        if (
                            (low <= packet_id < high)
                            if low < high
                            else (packet_id >= low or packet_id < high)
                        ) and packet_id in sent_ids:
                            _record(recorder, client_id, ended, sent_ids)
                    ended.append(packet_id)
                if message is not None:
                    message.holds -= 1
                    if not message.holds:
                        self._held_bytes -= message.size
                if held is not None and not held:
                    held = session._inflight = None  # Session.give_back_inflight
                if session.feeds:
                    if recorder is not None:
                        _record(recorder, client_id, ended, sent_ids)
                    self._pump(session, now)
                    continue
                pending = session.pending
                if not pending:
                    continue
                # _pump's loop, what does not change hoisted out of it: the
                # next queued QoS 1/2 messages take the room made, in order.
                # Anything else (QoS 0, an expiry, the rights to check, a
                # message too large for the client) goes through _pump itself.
                window = outbound.send_quota - len(inflight)
                while pending:
                    item = pending[0]
                    if not window and item[1]:
                        break  # the room is taken (mostly after one message)
                    message, qos, retain, sub_ids = item
                    if not qos or message.expires_at is not None or authorizer is not None:
                        if recorder is not None:
                            _record(recorder, client_id, ended, sent_ids)
                        self._pump(session, now)
                        break
                    if conn.bytes_to_send + link.backlog >= link.max_unsent:
                        break
                    if not v5:
                        sub_ids = ()
                    form = message._forms.get((v5, qos, retain, sub_ids))
                    if form is None:
                        form = message.form(v5, qos, retain, sub_ids, now)
                    size = form.size
                    if size > link.max_out:
                        if recorder is not None:
                            _record(recorder, client_id, ended, sent_ids)
                        self._pump(session, now)
                        break
                    pending.popleft()
                    session.queued_bytes -= message.size
                    if aliasing:
                        new_id = conn.publish_prepared(form)
                        assert new_id is not None
                    else:
                        # ServerFlows.publish_prepared: the next identifier in
                        # turn unless in use [MQTT-2.2.1-3], the shared pieces
                        # written around it, the flow recorded for a resend.
                        new_id = ids_in_use._next
                        if new_id in used:
                            new_id = ids_in_use.allocate()
                        else:
                            used[new_id] = None
                            ids_in_use._next = new_id % MAX_PACKET_ID + 1
                        out = conn._output
                        if out is None:
                            out = conn._output = []
                        out.append(form.head)
                        out.append(packet_id_bytes(new_id))
                        out.append(form.tail)
                        conn.bytes_to_send += size
                        # The record of the flow the PUBACK ended (QoS 1: in
                        # the PUBLISHED stage) holds the new one, if not taken.
                        if spare is None:
                            flow = _new_outbound(OutboundMessage)
                            flow.stage = _PUBLISHED
                        else:
                            flow, spare = spare, None
                        flow.packet = form.packet
                        flow.packet_id = new_id
                        inflight[new_id] = flow
                    window -= 1
                    if held is None:
                        held = session._inflight = {}
                    held[new_id] = message
                    if recorder is not None:
                        sent_ids.append(new_id)
                    self.messages_sent += 1
                    sent_by_qos[qos] += 1
                if not session.pending:
                    session.pending = ()  # the deque is given back
        finally:
            # Also when something raised: the store follows what was done.
            if recorder is not None:
                _record(recorder, client_id, ended, sent_ids)
        return done


def _record(recorder: Any, client_id: str, ended: list[int], sent: list[int]) -> None:
    """Tell the store of the flows ``ended`` and the queued messages ``sent``
    (identifiers, emptied), in one call each where it takes many (see
    :mod:`mqttproto.store`)."""
    if ended:
        _tell(recorder, "end_inflight", client_id, ended)
    if sent:
        _tell(recorder, "send_queued", client_id, sent)


def _tell(recorder: Any, call: str, client_id: str, packet_ids: list[int]) -> None:
    """``recorder.<call>_many(client_id, packet_ids)``, or ``<call>`` for each
    identifier in turn on a store without it; ``packet_ids`` is emptied."""
    many = getattr(recorder, call + "_many", None)
    if many is not None:
        many(client_id, packet_ids)
    else:
        single = getattr(recorder, call)
        for packet_id in packet_ids:
            single(client_id, packet_id)
    packet_ids.clear()
