"""The server role: :class:`ServerConnection`, one client's network connection.

A :class:`ServerConnection` is the server side of MQTT 3.1, 3.1.1 and 5.0 for
one network connection, without a broker: bytes and time go in, events and
bytes come out, and the application answers with method calls, as h11's
server answers requests::

    conn = ServerConnection(ServerConfig(), now=now())
    conn.receive_data(sock.recv(65536), now())
    for event in conn.events():
        if isinstance(event, ConnectRequested):
            conn.accept()                        # or refuse(0x86), or auth(...)
        elif isinstance(event, MessageReceived):
            store(event.packet)
            if event.qos:
                conn.acknowledge(event.packet_id)  # PUBACK / PUBREC
        elif isinstance(event, SubscribeRequested):
            conn.suback(event.packet_id, [s.max_qos for s in event.subscriptions])
    sock.sendall(conn.data_to_send(now()))
    # and call handle_timer(now()) when get_timer() is reached

The role keeps the protocol: the connection's lifecycle, keep-alive, what
the server announced (packet size, Receive Maximum, topic aliases, Maximum
QoS, Retain Available, user-property limits) and the QoS 1/2 handshakes in
both directions. The application keeps everything else: who may connect,
sessions (:class:`ServerSession` holds the QoS state to carry from one
connection to the next), routing, retained messages and wills.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Iterator
from typing import ClassVar

from ._codec_common import PLAIN_PUBLISH as _PLAIN_PUBLISH
from ._connection import Connection
from ._server_answers import ServerAnswers
from ._server_flows import ServerFlows
from ._server_input import _APP, RECEIVABLE, ServerInput, _EndOfStream
from ._server_session import InflightMessage, ServerSession
from ._state import ConnectionState, Input, Rare, RareField
from .codec import PacketReader
from .config import MAX_PACKET_SIZE, ServerConfig
from .enums import PacketType, ProtocolVersion, QoS, ReasonCode
from .errors import LocalProtocolError, RemoteProtocolError
from .events import Disconnected, Event, MessageReceived
from .packets import ConnectPacket, Packet, PublishPacket

__all__ = ["InflightMessage", "ServerConnection", "ServerSession"]

_S = ConnectionState
_CONNECTED = ConnectionState.CONNECTED
# MessageReceived built without a call frame (see events.message_received).
_new_event = object.__new__
_set_packet = MessageReceived.__dict__["packet"].__set__
_P = PacketType
_C = ReasonCode
_V5 = ProtocolVersion.MQTT_5_0


@functools.lru_cache(maxsize=16)
def _topic_limits(max_topic_length: int, max_topic_levels: int) -> tuple[int, int]:
    """``_topic_chars_ok`` and ``_plain_topic_chars`` for these limits: the
    same int objects for every connection of a config (28 bytes each)."""
    chars_ok = max_topic_length // 4
    return chars_ok, min(chars_ok, max_topic_levels - 1)


class _ConnectPhase(Rare):
    """The fields of a :class:`ServerConnection` that hold something only
    while a CONNECT is answered or an authentication exchange runs (see
    :class:`~mqttproto._state.Rare`): five slots of every connection."""

    DEFAULTS: ClassVar[dict[str, object]] = {
        "_auth_turn": _APP,
        "_connect": None,
        "_held": None,
        "_reauth": False,
        "_waiting_bytes": 0,
    }
    __slots__ = tuple(DEFAULTS)


class ServerConnection(ServerAnswers, ServerInput, ServerFlows, Connection):
    """The server side of one MQTT network connection, without I/O.

    :param config: the limits of this connection (:class:`~mqttproto.config.ServerConfig`).
    :param now: when the network connection was opened; the connect timeout
        counts from it. None: from the first call that gives a time.

    The connection goes IDLE → CONNECTING (CONNECT received, waiting for
    :meth:`accept`, :meth:`refuse` or an enhanced authentication exchange)
    → CONNECTED → CLOSED (:attr:`state`). Every method that answers the
    client checks first and changes nothing when it raises
    :class:`~mqttproto.LocalProtocolError`.
    """

    RECEIVABLE = RECEIVABLE
    HANDLERS: ClassVar[dict[PacketType, str]] = {
        _P.CONNECT: "_on_connect",
        _P.PUBLISH: "_on_publish",
        _P.PUBACK: "_on_puback",
        _P.PUBREC: "_on_pubrec",
        _P.PUBREL: "_on_pubrel",
        _P.PUBCOMP: "_on_pubcomp",
        _P.SUBSCRIBE: "_on_subscribe",
        _P.UNSUBSCRIBE: "_on_unsubscribe",
        _P.PINGREQ: "_on_pingreq",
        _P.DISCONNECT: "_on_disconnect",
        _P.AUTH: "_on_auth",
    }
    _role = "server"

    __slots__ = (
        "_acks_fit",
        "_alias_candidates",
        "_alias_limit",
        "_aliases_out",
        "_aliasing",
        "_event_queue",
        "_expiry_zero",
        "_incoming",
        "_incoming_error",
        "_incoming_pos",
        "_input_now",
        "_keep_alive",
        "_max_out",
        "_opened_at",
        "_output",
        "_pending_subscribes",
        "_pending_unsubscribes",
        "_plain_limit",
        "_plain_topic_chars",
        "_rare",
        "_session",
        "_topic_chars_ok",
        "_unacked",
        "_v5",
        "bytes_to_send",
        "client_id",
        "config",
    )

    # What the CONNECT phase (and an enhanced authentication, a
    # re-authentication) uses, kept in a _ConnectPhase while any of it is set.
    #: The CONNECT, until it is accepted (kept while it names an
    #: authentication method, for a re-authentication).
    _connect: RareField[ConnectPacket | None] = RareField(_ConnectPhase)
    #: Whose turn it is in an authentication exchange (_APP or _CLIENT).
    _auth_turn: RareField[bool] = RareField(_ConnectPhase)
    #: A re-authentication whose answer the application owes.
    _reauth: RareField[bool] = RareField(_ConnectPhase)
    #: Packets that may not be handled before CONNECT is accepted,
    #: received during an enhanced authentication exchange [MQTT-3.1.4-5].
    _held: RareField[list[Packet] | None] = RareField(_ConnectPhase)
    #: Bytes received while a CONNECT waits for the application's answer.
    _waiting_bytes: RareField[int] = RareField(_ConnectPhase)

    def __init__(self, config: ServerConfig | None = None, *, now: float | None = None) -> None:
        config = config if config is not None else ServerConfig()
        super().__init__(
            None,
            PacketReader(
                max_packet_size=config.max_packet_size,
                max_user_properties=config.max_user_properties,
                max_user_property_bytes=config.max_user_property_bytes,
                # A client may send none [MQTT-3.3.4-6]: the first is refused,
                # the rest of a flood is checked, not built.
                max_subscription_identifiers=0,
            ),
        )
        self.config = config
        #: Rarely more than one or two: packets are handled as events are
        #: taken. Made by the first, dropped with the last (an idle
        #: connection holds no list).
        self._event_queue: list[Event] | None = None
        self._opened_at = now
        if now is not None:
            self._last_received = now
        #: The fields of the CONNECT phase (see the RareFields below).
        self._rare: _ConnectPhase | None = None
        #: Whether the CONNECT's Session Expiry Interval was 0 (absent).
        self._expiry_zero = True
        #: The client identifier in force (the assigned one, if any).
        self.client_id = ""
        self._keep_alive = 0
        #: Made when first needed: a broker gives the session at accept().
        self._session: ServerSession = None  # type: ignore[assignment]  # see session
        #: Packets received and not yet handled: next_event() handles them
        #: one by one, so that the application answers each before the next
        #: is read; then the reader's error, if the stream broke after them.
        self._incoming: list[Packet] | tuple[()] = ()
        self._incoming_pos = 0
        self._incoming_error: RemoteProtocolError | None = None
        #: When the packets waiting in _incoming arrived.
        self._input_now = 0.0 if now is None else now
        #: Bytes waiting for :meth:`data_to_send` (read it, do not set it):
        #: what a server counts against a high-water mark of its own.
        self.bytes_to_send = 0
        #: The encoded pieces waiting for :meth:`data_to_send`: made by the
        #: first, dropped when taken (an idle connection holds no list).
        self._output: list[bytes] | None = None
        #: What the hot path of publish_prepared reads: MQTT 5, the client's
        #: Maximum Packet Size, and whether outgoing topic aliases are chosen.
        self._v5 = False
        self._max_out = MAX_PACKET_SIZE
        self._aliasing = False
        #: The largest QoS 0 PUBLISH publish_prepared() appends as it is: the
        #: client's maximum once connected without outbound aliases, else -1.
        self._plain_limit = -1
        #: Outgoing topic aliases (topic -> alias, least recently used
        #: first), made when the client accepts any; at most _alias_limit.
        self._aliases_out: OrderedDict[str, int] | None = None
        self._alias_limit = 0
        #: Topics sent once lately without an alias while all were taken:
        #: the next sending of one takes the least recently used alias.
        self._alias_candidates: OrderedDict[str, None] | None = None
        self._acks_fit = True
        #: SUBSCRIBE / UNSUBSCRIBE packet id -> how many filters, until
        #: answered; QoS 1/2 messages reported and not yet acknowledged by
        #: the application. Each table is made by its first entry and
        #: dropped with its last: an idle connection holds none.
        self._pending_subscribes: dict[int, int] | None = None
        self._pending_unsubscribes: dict[int, int] | None = None
        self._unacked: dict[int, QoS] | None = None
        #: Topic names this many characters long or shorter are within
        #: ``max_topic_length`` whatever they hold (4 UTF-8 bytes at most each).
        #: ... and (_plain_topic_chars) within max_topic_levels too (a level
        #: needs a character).
        self._topic_chars_ok, self._plain_topic_chars = _topic_limits(
            config.max_topic_length, config.max_topic_levels
        )

    # -- what the caller sees -------------------------------------------------

    @property
    def keep_alive(self) -> int:
        """The keep-alive in force once accepted (the clamped or imposed one)."""
        return self._keep_alive

    @property
    def session(self) -> ServerSession:
        """The QoS state of the session this connection serves; keep it for
        the client's next connection if the session is to outlive this one.
        Made when first needed: before :meth:`accept` a new one."""
        session = self._session
        if session is None:
            session = self._session = ServerSession(max_queued=self.config.max_queued_messages)
        return session

    @property
    def client_maximum_packet_size(self) -> int:
        """The largest packet the client accepts (its Maximum Packet Size)."""
        return self._max_out

    @property
    def incomplete_packet_size(self) -> int:
        """The declared size of the packet being received and not yet
        complete (0: none, or its fixed header is not in yet): what reading
        it will hold, at most ``config.max_packet_size``. A server that
        budgets memory across connections reserves it before reading on
        (see ``max_buffered_input`` in :class:`~mqttproto.config.BrokerConfig`)."""
        return self._reader.incomplete_size

    @property
    def send_window(self) -> int:
        """How many more QoS 1/2 messages may go out now; past it :meth:`publish`
        queues them (the client's Receive Maximum, at most
        ``max_inflight_messages``)."""
        session = self._session
        if session is None:
            return 0
        outbound = session._outbound
        if outbound is None:
            return session.send_quota
        if outbound.queue:
            return 0
        return outbound.send_quota - len(outbound.inflight)

    def next_event(self) -> Event | None:
        """The next event, or None when more data (or time) is needed.

        The events are :class:`~mqttproto.events.ConnectRequested`,
        :class:`~mqttproto.events.AuthReceived`,
        :class:`~mqttproto.events.MessageReceived` (topic aliases resolved),
        :class:`~mqttproto.events.SubscribeRequested`,
        :class:`~mqttproto.events.UnsubscribeRequested`,
        :class:`~mqttproto.events.PublishAcknowledged` and
        :class:`~mqttproto.events.PublishDiscarded` for what this side
        published, and :class:`~mqttproto.events.Disconnected`, always the
        last one: after it the connection is closed and nothing else comes.

        Packets are handled here, one after the other, as the events are
        taken: the application answers each event (``accept``, ``suback``,
        ``acknowledge``...) before the next packet is read, so what the
        client hears does not depend on how its bytes were cut into reads.
        What the role answers by itself (PINGRESP, PUBCOMP, PUBREL) is
        queued then too: drain the events after each :meth:`receive_data`.
        None means that more data (or time) is needed, or that a CONNECT
        (or the client's AUTH) waits for the application's answer; it
        changes nothing.

        :raises RemoteProtocolError: the client broke the protocol with the
            packet handled now (see :meth:`receive_data`); the goodbye is
            queued, the connection is CLOSED, and the next call returns the
            :class:`~mqttproto.events.Disconnected`.
        """
        if self._event_queue is None and self.state is _CONNECTED:
            # The hot path: packets of a connected client, handled in a row
            # until one makes an event (most do).
            incoming = self._incoming
            pos = self._incoming_pos
            handlers = self._CONNECTED_HANDLERS
            now = self._input_now
            while pos < len(incoming):
                handler = handlers.get(type(incoming[pos]))
                if handler is None:
                    break  # not allowed now: the general path says so
                self._incoming_pos = pos + 1
                try:
                    event = handler(self, incoming[pos], now)
                except RemoteProtocolError as exc:
                    self._protocol_error(exc, now)
                    raise
                if event is not None:
                    return event
                if self._event_queue is not None:
                    return self._take_event()
                if self.state is not _CONNECTED:
                    break
                pos += 1
        while self._event_queue is None:
            if not self._handle_next():
                return None
        return self._take_event()

    def events(self) -> Iterator[Event]:
        """Take the events in order, as :meth:`next_event` does, until it
        would return None; a protocol error ends nothing here: its
        :class:`~mqttproto.events.Disconnected` is the last event. The
        cheapest way to take many events (a broker's loop)."""
        # next_event's loop as a generator: no call per event.
        handlers = self._CONNECTED_HANDLERS
        while True:
            if self._event_queue is not None:
                yield self._take_event()
                continue
            if self.state is _CONNECTED:
                # The hot path: the next packet of a connected client.
                pos = self._incoming_pos
                incoming = self._incoming
                if pos < len(incoming):
                    packet = incoming[pos]
                    kind = type(packet)
                    if kind is PublishPacket:
                        # _on_publish's hot path, inline: a plain PUBLISH
                        # with a short topic is its event as it is.
                        fields = packet.__dict__
                        if (
                            len(fields) == _PLAIN_PUBLISH
                            and len(fields["topic"]) <= self._plain_topic_chars
                        ):
                            self._incoming_pos = pos + 1
                            received = _new_event(MessageReceived)
                            _set_packet(received, packet)
                            yield received
                            continue
                    handler = handlers.get(kind)
                    if handler is not None:
                        self._incoming_pos = pos + 1
                        try:
                            event = handler(self, packet, self._input_now)
                        except RemoteProtocolError as exc:
                            self._protocol_error(exc, self._input_now)
                            continue
                        if event is not None:
                            yield event
                        continue
            try:
                if not self._handle_next():
                    return
            except RemoteProtocolError:
                # The goodbye is queued; the Disconnected comes next.
                continue

    def receive_data(self, data: bytes, now: float) -> None:
        """Feed bytes received from the client at time ``now``.

        They are split into packets at once (a partial packet waits for the
        rest; a packet announced larger than ``max_packet_size`` is refused
        on its fixed header, before its body is buffered), and the packets
        are handled as :meth:`next_event` is called: what they mean becomes
        events, what the protocol answers by itself (PINGRESP, PUBCOMP,
        PUBREL, an ack of a retransmitted QoS 2 message) goes to
        :meth:`data_to_send`. Keep-alive counts whole packets only. While the
        application has not answered a CONNECT, what follows it waits, up to
        ``max_packet_size`` bytes, and is read once the CONNECT is accepted
        (never, if it is refused) [MQTT-3.1.4-5]. Bytes after the connection
        closed are ignored.

        :raises RemoteProtocolError: more than ``max_packet_size`` bytes came
            while a CONNECT waits for its answer (0x97). A broken stream (a
            malformed packet, one too large) is reported by
            :meth:`next_event` once the packets before it are handled, so
            that the outcome does not depend on how the stream was cut: the
            goodbye with its reason code is then queued (MQTT 5 DISCONNECT,
            or a refusing CONNACK before CONNECT was answered; 3.1.1:
            nothing, the stream closes), the connection is CLOSED and
            :class:`~mqttproto.events.Disconnected` is the last event.
        :raises LocalProtocolError: more than 65,536 packets wait to be
            handled: drain :meth:`next_event` first.
        """
        if self._opened_at is None:
            self._opened_at = now
        if self.state is _S.CLOSED or self._incoming_error is not None:
            return
        if self.state is _S.CONNECTING and self._auth_turn is _APP:
            self._waiting_bytes += len(data)
            if self._waiting_bytes > self.config.max_packet_size:
                error = RemoteProtocolError(
                    "more than max_packet_size bytes sent before CONNECT was answered",
                    _C.QUOTA_EXCEEDED,
                )
                self._protocol_error(error, now)
                raise error
        if len(self._incoming) - self._incoming_pos > 65536:
            raise LocalProtocolError("65,536 packets wait for next_event(): drain the events")
        try:
            packets = self._reader.feed(data)
        except RemoteProtocolError as exc:
            # The packets before the faulty one are handled first, as if they
            # had come in an earlier read.
            self._queue(exc.preceding_packets)
            self._incoming_error = self._reader_error(exc)
            return
        if packets:
            # Keep-alive counts whole Control Packets, not bytes
            # [MQTT-3.1.2-24]: a client dribbling a packet it never finishes
            # (slowloris) still times out.
            self._last_received = now
            self._input_now = now
            self._queue(packets)

    def receive_eof(self, now: float) -> None:
        """The client closed its side of the stream: the connection ends
        (:class:`~mqttproto.events.Disconnected` with 0x80, ``by_client``
        False: it said nothing), once the packets received before are handled."""
        if self.state is _S.CLOSED:
            return
        self._input_now = now
        if len(self._incoming) > self._incoming_pos or self._incoming_error is not None:
            if self._incoming_error is None:
                self._incoming_error = _EndOfStream("the client closed the stream")
            return
        self._end_of_stream(now)

    def data_to_send(self, now: float) -> bytes:
        """The bytes to write to the transport, all of them, in order; b"" if
        none. ``now`` is when they go out."""
        self.bytes_to_send = 0
        out = self._output
        if out is None:
            return b""
        # No _last_sent: the server's keep-alive counts what it receives
        # (a float per connection kept for nothing).
        self._output = None
        return out[0] if len(out) == 1 else b"".join(out)

    # -- the application's answers ------------------------------------------------

    # -- internals ----------------------------------------------------------------

    def _move(self, event: Input) -> None:
        super()._move(event)
        # Kept with the state, so that publish_prepared's hot path reads one number.
        self._plain_limit = self._max_out if self.state is _CONNECTED and not self._aliasing else -1

    def _queue(self, packets: list[Packet]) -> None:
        """Packets to handle after those already waiting (the list is kept)."""
        incoming = self._incoming
        if self._incoming_pos >= len(incoming):
            self._incoming = packets
            self._incoming_pos = 0
        else:
            assert isinstance(incoming, list)  # it holds packets still to handle
            incoming.extend(packets)

    def _add_event(self, event: Event) -> None:
        queue = self._event_queue
        if queue is None:
            self._event_queue = [event]
        else:
            queue.append(event)

    def _take_event(self) -> Event:
        """The first event queued (there is one); the list goes with the last."""
        queue = self._event_queue
        assert queue is not None
        event = queue.pop(0)
        if not queue:
            self._event_queue = None
        return event

    def _write(self, data: bytes) -> None:
        out = self._output  # _append_out inlined: every answer goes here
        if out is None:
            self._output = [data]
        else:
            out.append(data)
        self.bytes_to_send += len(data)

    def _append_out(self, data: bytes) -> None:
        out = self._output
        if out is None:
            self._output = [data]
        else:
            out.append(data)

    def _send(self, packet: Packet) -> None:
        self._write(self._encode(packet))

    def _close(self, event: Disconnected) -> None:
        """The connection is over: forget what belongs to it, report it last."""
        self._incoming = ()
        self._incoming_pos = 0
        self._incoming_error = None
        self._held = None
        self._pending_subscribes = None
        self._pending_unsubscribes = None
        self._unacked = None
        self._reauth = False
        self._add_event(event)

    def _waiting_connect(self, what: str) -> ConnectPacket:
        connect = self._connect
        if self.state is not _S.CONNECTING or connect is None or self._auth_turn is not _APP:
            raise LocalProtocolError(f"{what} answers a CONNECT (or AUTH) waiting for it")
        return connect

    def _connected(self, what: str) -> None:
        if self.state is not _S.CONNECTED:
            raise LocalProtocolError(f"{what} while {self.state.value}")
