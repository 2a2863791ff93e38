"""The engine both connection roles share.

bytes in → :class:`PacketReader` → a ``PacketType → handler`` table → events
out; packets out → encoder → one outbound buffer. A role (client or server)
subclasses :class:`Connection`, lists which packets it may receive in each
state, provides one handler per packet type and says what goodbye to send
when the peer breaks the protocol.

The error path is here, once: a :class:`RemoteProtocolError` from the reader
or a handler queues the role's goodbye, closes the connection, reports it as
an event and is re-raised to the caller of :meth:`Connection.receive_data`.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, MutableSequence
from typing import Any, ClassVar

import attrs

from ._state import ConnectionState, Input, transition
from .codec import PacketReader, encode_packet
from .enums import PacketType, ProtocolVersion, ReasonCode
from .errors import LocalProtocolError, RemoteProtocolError, TopicAliasInvalid
from .events import Event
from .packets import PACKET_CLASSES, Packet, PublishPacket

__all__ = ["Connection"]

# Each handler takes the connection, the packet type it is registered for
# and the time.
#: A packet handler: ``(connection, packet, now)``. It may return the one
#: event the packet makes instead of queueing it (a received PUBLISH's hot path).
Handler = Callable[[Any, Any, float], "Event | None"]


class Connection(abc.ABC):
    """One network connection, either role, with no I/O of its own."""

    #: Which packet types may arrive in each state; anything else is a
    #: protocol error. Filled in by each role.
    RECEIVABLE: ClassVar[dict[ConnectionState, frozenset[PacketType]]] = {}
    #: ``PacketType -> method name`` of the role's packet handlers.
    HANDLERS: ClassVar[dict[PacketType, str]] = {}

    #: ``packet class -> handler function`` and ``state -> packet classes``,
    #: made once per role from HANDLERS and RECEIVABLE: a table per
    #: connection would cost a bound method per packet type, and keys that
    #: are classes hash in C where an Enum member's hash is Python code.
    _HANDLER_FUNCTIONS: ClassVar[dict[type, Handler]] = {}
    _RECEIVABLE_CLASSES: ClassVar[dict[ConnectionState, frozenset[type]]] = {}
    #: The handlers of what may be received once connected (the hot path).
    _CONNECTED_HANDLERS: ClassVar[dict[type, Handler]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.HANDLERS:
            cls._HANDLER_FUNCTIONS = {
                PACKET_CLASSES[packet_type]: getattr(cls, name)
                for packet_type, name in cls.HANDLERS.items()
            }
            cls._RECEIVABLE_CLASSES = {
                state: frozenset(PACKET_CLASSES[t] for t in types)
                for state, types in cls.RECEIVABLE.items()
            }
            cls._CONNECTED_HANDLERS = {
                kind: handler
                for kind, handler in cls._HANDLER_FUNCTIONS.items()
                if kind in cls._RECEIVABLE_CLASSES.get(ConnectionState.CONNECTED, ())
            }

    #: The events waiting for next_event(), held by each role.
    _events: MutableSequence[Event]
    #: The encoded packets waiting for data_to_send(), made by the role
    #: that uses this engine's data_to_send (the server keeps its own).
    _out: list[bytes]

    # A broker holds one per client: no per-instance dict.
    __slots__ = (
        "_aliases_in",
        "_last_received",
        "_last_sent",
        "_peer_max_packet_size",
        "_reader",
        "_version",
        "state",
    )

    def __init__(self, version: ProtocolVersion | None, reader: PacketReader | None = None) -> None:
        """``reader``: the role's own (with its limits); by default one for ``version``."""
        self.state = ConnectionState.IDLE
        self._version = version
        self._reader = reader if reader is not None else PacketReader(version=version)
        self._last_sent = 0.0
        self._last_received = 0.0
        #: The peer's Maximum Packet Size; None: the protocol's limit.
        self._peer_max_packet_size: int | None = None
        #: Topic aliases the peer defined on this connection (made by the
        #: first one: most peers define none).
        self._aliases_in: dict[int, str] | None = None

    # -- what the caller sees -------------------------------------------------

    @property
    def version(self) -> ProtocolVersion | None:
        """The protocol version of this connection (None: a server before CONNECT)."""
        return self._version

    @property
    def closed(self) -> bool:
        return self.state is ConnectionState.CLOSED

    def receive_data(self, data: bytes, now: float) -> None:
        """Feed bytes received from the peer at time ``now``.

        Any amount is fine: a partial packet waits for the rest, and a packet
        announced larger than the connection's maximum is refused on its
        fixed header, before its body is buffered. Every complete packet is
        handled at once: what it means becomes events (:meth:`next_event`),
        what the protocol answers by itself (PUBACK and PUBREC with automatic
        acknowledgement, PUBREL, PUBCOMP) goes to :meth:`data_to_send`.
        Keep-alive counts whole packets only. Bytes that arrive after the
        connection closed are ignored; ``b""`` changes nothing (use
        :meth:`receive_eof` for the end of the stream).

        :raises LocalProtocolError: no connection was started (a client
            before ``connect()``).
        :raises RemoteProtocolError: the peer broke the protocol (a malformed
            packet, one too large, one not allowed now, a limit this side
            announced exceeded). The packets before the faulty one were
            handled first, as if they had come in an earlier read, so the
            outcome does not depend on how the stream was cut. The goodbye
            with the error's reason code is queued (an MQTT 5 DISCONNECT; in
            3.1.1 nothing, the stream just closes), the connection is CLOSED
            and :class:`~mqttproto.events.Disconnected` is the last event.
        """
        if self.state is ConnectionState.CLOSED:
            return
        if self.state is ConnectionState.IDLE and not self._accepts_before_start():
            raise LocalProtocolError("receive_data() before the connection was started")
        try:
            packets = self._reader.feed(data)
        except RemoteProtocolError as exc:
            # The packets before the faulty one are handled first, as if they
            # had come in an earlier read: the outcome must not depend on how
            # the stream was cut. One of them may end the connection first.
            if exc.preceding_packets:
                self._dispatch(exc.preceding_packets, now)
            if not self.closed:
                error = self._reader_error(exc)
                self._protocol_error(error, now)
                if error is exc:
                    raise
                raise error from exc
            return
        if packets:
            # Keep-alive counts whole Control Packets, not bytes
            # [MQTT-3.1.2-24]: a peer dribbling a packet it never finishes
            # (slowloris) still times out.
            self._last_received = now
            self._dispatch(packets, now)

    def _dispatch(self, packets: list[Packet], now: float) -> None:
        """Hand each packet to its handler; a protocol error ends the connection."""
        receivable = self._RECEIVABLE_CLASSES
        handlers = self._HANDLER_FUNCTIONS
        state = self.state
        allowed = receivable[state]
        for packet in packets:
            kind = type(packet)
            try:
                if kind not in allowed:
                    if self.closed:
                        # Whatever follows the end of the conversation is dropped.
                        return
                    raise RemoteProtocolError(
                        f"{packet.packet_type.name} may not be received by a {self._role} "
                        f"in state {state.value}"
                    )
                event = handlers[kind](self, packet, now)
            except RemoteProtocolError as exc:
                self._protocol_error(exc, now)
                raise
            if event is not None:
                self._events.append(event)
            if self.state is not state:
                state = self.state
                allowed = receivable[state]

    def receive_eof(self, now: float) -> None:
        """The peer closed its side of the stream at ``now``: the connection
        ends, and :class:`~mqttproto.events.Disconnected` (0x80 *Unspecified
        error*, as the peer said nothing) is the last event. Nothing happens
        if it was already closed."""
        if self.state is ConnectionState.CLOSED:
            return
        self._move(Input.RECV_EOF)
        self._connection_ended(ReasonCode.UNSPECIFIED_ERROR, now)

    def data_to_send(self, now: float) -> bytes:
        """The bytes to write to the transport, all of them, in order, and
        forget them; ``b""`` if there are none.

        ``now`` is when they go out: a client's keep-alive counts from the
        last bytes sent. Call it after every other call (any of them may
        queue bytes). After :class:`~mqttproto.events.Disconnected`, write
        what it returns, then close the transport.
        """
        out = self._out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        self._last_sent = now
        return data

    # -- for the roles ----------------------------------------------------------

    _role: ClassVar[str] = "peer"

    def _move(self, event: Input) -> None:
        """The one way a connection changes state: the ``(state, input)``
        table of :mod:`._state`. An illegal move raises ``KeyError`` before
        anything changes (the callers check first)."""
        self.state = transition(self.state, event)

    def _accepts_before_start(self) -> bool:
        """Whether bytes may arrive in IDLE (a server waits for CONNECT there)."""
        return False

    def _encode(self, packet: Packet) -> bytes:
        """Encode for this connection, refusing what the peer cannot accept.

        :raises LocalProtocolError: the packet breaks a rule, or is larger
            than the peer's Maximum Packet Size [MQTT-3.1.2-24] / [MQTT-3.2.2-15].
        """
        assert self._version is not None
        data = encode_packet(packet, version=self._version)
        limit = self._peer_max_packet_size
        if limit is not None and len(data) > limit:
            raise LocalProtocolError(
                f"{packet.packet_type.name} of {len(data)} bytes exceeds the peer's "
                f"Maximum Packet Size of {limit}"
            )
        return data

    def _send(self, packet: Packet) -> None:
        self._out.append(self._encode(packet))

    def _append_out(self, data: bytes) -> None:
        """Queue bytes for data_to_send(), outside any count a role keeps."""
        self._out.append(data)

    def _protocol_error(self, exc: RemoteProtocolError, now: float) -> None:
        """Queue the goodbye for ``exc``, close, and report it."""
        if self.state is ConnectionState.CLOSED:
            return
        goodbye = self._goodbye(exc)
        if goodbye is not None:
            try:
                self._append_out(self._encode(goodbye))
            except LocalProtocolError:
                # Too big for the peer's Maximum Packet Size: the reason
                # string goes first [MQTT-3.14.2-3]; if even the bare packet
                # is too big, close without a goodbye.
                with contextlib.suppress(LocalProtocolError, TypeError):
                    bare = attrs.evolve(goodbye, reason_string=None)  # type: ignore[arg-type]
                    self._append_out(self._encode(bare))
        self._move(Input.PROTOCOL_ERROR)
        self._connection_ended(exc.reason_code, now)

    def _resolve_alias(self, packet: PublishPacket, maximum: int, *, keep: bool) -> PublishPacket:
        """Apply an incoming PUBLISH's Topic Alias (MQTT 5 section 3.3.2.3.4).

        A topic with an alias (re)defines it; an empty topic uses it. With
        ``keep`` false the alias is removed from the packet (a broker forwards
        the topic, never the sender's alias).

        :raises TopicAliasInvalid: an alias of 0 or above ``maximum``
            [MQTT-3.3.2-9] / [MQTT-3.3.2-10], or one never defined.
        """
        alias = packet.topic_alias
        assert alias is not None
        if not 0 < alias <= maximum:
            raise TopicAliasInvalid(f"topic alias {alias} outside 1..{maximum} [MQTT-3.3.2-9]")
        aliases = self._aliases_in
        if packet.topic:
            if aliases is None:
                aliases = self._aliases_in = {}
            aliases[alias] = packet.topic
            return packet if keep else attrs.evolve(packet, topic_alias=None)
        topic = None if aliases is None else aliases.get(alias)
        if topic is None:
            raise TopicAliasInvalid(f"topic alias {alias} was never defined")
        if keep:
            return attrs.evolve(packet, topic=topic)
        return attrs.evolve(packet, topic=topic, topic_alias=None)

    def _reader_error(self, exc: RemoteProtocolError) -> RemoteProtocolError:
        """The error to report for a decoding failure (a role may restate it)."""
        return exc

    @abc.abstractmethod
    def _goodbye(self, exc: RemoteProtocolError) -> Packet | None:
        """The packet that tells the peer about ``exc``; None to just close."""

    @abc.abstractmethod
    def _connection_ended(self, reason_code: ReasonCode, now: float) -> None:
        """The connection closed for a reason of this side's (EOF, error, timeout)."""
