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

import contextlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import ClassVar

import attrs

from ._connection import Connection
from ._server_flows import ServerFlows
from ._server_input import _APP, RECEIVABLE, ServerInput, _EndOfStream
from ._server_session import InflightMessage, ServerSession
from ._state import ConnectionState, Input
from .codec import PacketReader
from .config import MAX_PACKET_SIZE, ServerConfig
from .enums import PacketType, ProtocolVersion, QoS, ReasonCode
from .errors import LocalProtocolError, RemoteProtocolError
from .events import (
    Disconnected,
    Event,
)
from .packets import (
    ConnAckPacket,
    ConnectPacket,
    DisconnectPacket,
    Packet,
)

__all__ = ["InflightMessage", "ServerConnection", "ServerSession"]

_S = ConnectionState
_CONNECTED = ConnectionState.CONNECTED
_P = PacketType
_C = ReasonCode
_V5 = ProtocolVersion.MQTT_5_0


class ServerConnection(ServerInput, ServerFlows, Connection):
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
        "_aliases_out",
        "_aliasing",
        "_auth_turn",
        "_client_alias_maximum",
        "_connect",
        "_events",
        "_held",
        "_incoming",
        "_incoming_error",
        "_incoming_pos",
        "_input_now",
        "_keep_alive",
        "_max_out",
        "_opened_at",
        "_pending_subscribes",
        "_pending_unsubscribes",
        "_plain_limit",
        "_plain_topic_chars",
        "_reauth",
        "_session",
        "_topic_chars_ok",
        "_unacked",
        "_v5",
        "_waiting_bytes",
        "bytes_to_send",
        "client_id",
        "config",
    )

    def __init__(self, config: ServerConfig | None = None, *, now: float | None = None) -> None:
        super().__init__(None)
        self.config = config = config if config is not None else ServerConfig()
        self._reader = PacketReader(
            max_packet_size=config.max_packet_size,
            max_user_properties=config.max_user_properties,
            max_user_property_bytes=config.max_user_property_bytes,
            # A client may send none [MQTT-3.3.4-6]: the first is refused,
            # the rest of a flood is checked, not built.
            max_subscription_identifiers=0,
        )
        #: Rarely more than one or two: packets are handled as events are taken.
        self._events: list[Event] = []
        self._opened_at = now
        if now is not None:
            self._last_received = now
        self._connect: ConnectPacket | None = None
        #: The client identifier in force (the assigned one, if any).
        self.client_id = ""
        self._keep_alive = 0
        #: Made when first needed: a broker gives the session at accept().
        self._session: ServerSession = None  # type: ignore[assignment]  # see session
        self._auth_turn = _APP
        #: A re-authentication whose answer the application owes.
        self._reauth = False
        #: Packets received and not yet handled: next_event() handles them
        #: one by one, so that the application answers each before the next
        #: is read; then the reader's error, if the stream broke after them.
        self._incoming: list[Packet] = []
        self._incoming_pos = 0
        self._incoming_error: RemoteProtocolError | None = None
        #: When the packets waiting in _incoming arrived.
        self._input_now = 0.0 if now is None else now
        #: Packets that may not be handled before CONNECT is accepted,
        #: received during an enhanced authentication exchange [MQTT-3.1.4-5].
        self._held: list[Packet] | None = None
        #: Bytes received while a CONNECT waits for the application's answer.
        self._waiting_bytes = 0
        #: Bytes waiting for :meth:`data_to_send` (read it, do not set it):
        #: what a server counts against a high-water mark of its own.
        self.bytes_to_send = 0
        self._client_alias_maximum = 0
        #: What the hot path of publish_prepared reads: MQTT 5, the client's
        #: Maximum Packet Size, and whether outgoing topic aliases are chosen.
        self._v5 = False
        self._max_out = MAX_PACKET_SIZE
        self._aliasing = False
        #: The largest QoS 0 PUBLISH publish_prepared() appends as it is: the
        #: client's maximum once connected without outbound aliases, else -1.
        self._plain_limit = -1
        #: Outgoing topic aliases, made when the client accepts any.
        self._aliases_out: OrderedDict[str, int] | None = None
        self._acks_fit = True
        self._pending_subscribes: dict[int, int] = {}
        self._pending_unsubscribes: dict[int, int] = {}
        #: QoS 1/2 messages reported and not yet acknowledged by the application.
        self._unacked: dict[int, QoS] = {}
        #: Topic names this many characters long or shorter are within
        #: ``max_topic_length`` whatever they hold (4 UTF-8 bytes at most each).
        self._topic_chars_ok = config.max_topic_length // 4
        #: ... and within max_topic_levels too (a level needs a character).
        self._plain_topic_chars = min(self._topic_chars_ok, config.max_topic_levels - 1)

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
    def send_window(self) -> int:
        """How many more QoS 1/2 messages may go out now; past it :meth:`publish`
        queues them (the client's Receive Maximum, at most
        ``max_inflight_messages``)."""
        session = self._session
        if session is None:
            return 0
        outbound = session.outbound
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
        events = self._events
        if not events and self.state is _CONNECTED:
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
                if events:
                    return events.pop(0)
                if self.state is not _CONNECTED:
                    break
                pos += 1
        while not events:
            if not self._handle_next():
                return None
        return events.pop(0)

    def events(self) -> Iterator[Event]:
        """Take the events in order, as :meth:`next_event` does, until it
        would return None; a protocol error ends nothing here: its
        :class:`~mqttproto.events.Disconnected` is the last event. The
        cheapest way to take many events (a broker's loop)."""
        # next_event's loop as a generator: no call per event.
        events = self._events
        handlers = self._CONNECTED_HANDLERS
        while True:
            if events:
                yield events.pop(0)
                continue
            if self.state is _CONNECTED:
                # The hot path: the next packet of a connected client.
                pos = self._incoming_pos
                incoming = self._incoming
                if pos < len(incoming):
                    packet = incoming[pos]
                    handler = handlers.get(type(packet))
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
                pass  # the goodbye is queued; the Disconnected comes next

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
        return super().data_to_send(now)

    # -- the application's answers ------------------------------------------------

    def accept(
        self,
        *,
        session_present: bool = False,
        session: ServerSession | None = None,
        assigned_client_identifier: str | None = None,
        session_expiry_interval: int | None = None,
        authentication_data: bytes | None = None,
        response_information: str | None = None,
        server_reference: str | None = None,
        reason_string: str | None = None,
        user_properties: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Accept the CONNECT: queue the accepting CONNACK.

        The CONNACK announces this connection's limits from the config
        (Receive Maximum, Maximum Packet Size, Topic Alias Maximum, Maximum
        QoS, Retain Available, what subscriptions may use) and the
        keep-alive in force: the client's, clamped to the config's bounds,
        or ``server_keep_alive``; an MQTT 5 client is told when it differs
        [MQTT-3.2.2-21].

        :param session_present: the session resumes [MQTT-3.2.2-2]; with
            ``session``, what was in flight in it is sent again (PUBLISH with
            DUP, PUBREL) [MQTT-4.4.0-1]. MQTT 3.1 has no such flag: there the
            session resumes whenever one is given.
        :param session: the client's session state from its last connection
            (:attr:`session` of that connection); None: a new one.
        :param assigned_client_identifier: the identifier given to a client
            that sent an empty one; MQTT 5 requires it then [MQTT-3.2.2-16].
        :param session_expiry_interval: the interval granted, when it is not
            what the client asked (MQTT 5).
        :param authentication_data: the last data of an enhanced
            authentication exchange (MQTT 5).

        Then the packets the client sent after CONNECT are read.

        :raises LocalProtocolError: no CONNECT waits for an answer, an
            argument the protocol forbids here, or a CONNACK larger than the
            client's Maximum Packet Size (answer with
            ``refuse(ReasonCode.PACKET_TOO_LARGE)`` then).
        """
        connect = self._waiting_connect("accept()")
        v5 = self._version == _V5
        config = self.config
        if assigned_client_identifier is not None:
            if connect.client_id:
                raise LocalProtocolError("the client chose its identifier: nothing to assign")
        elif not connect.client_id and v5:
            raise LocalProtocolError(
                "a client without an identifier must be given one [MQTT-3.2.2-16]"
            )
        if not v5 and (
            session_expiry_interval is not None
            or authentication_data is not None
            or response_information is not None
            or server_reference is not None
            or reason_string is not None
            or user_properties
        ):
            raise LocalProtocolError("CONNACK properties exist in MQTT 5 only")
        if session_present and connect.clean_start:
            raise LocalProtocolError("a clean start has no session present [MQTT-3.2.2-4]")
        ack, keep_alive = self._connack(
            connect,
            present=session_present and self._version != ProtocolVersion.MQTT_3_1,
            assigned_client_identifier=assigned_client_identifier,
            session_expiry_interval=session_expiry_interval,
            authentication_data=authentication_data,
            response_information=response_information,
            server_reference=server_reference,
            reason_string=reason_string,
            user_properties=tuple(user_properties),
        )
        data = self._encode(ack)  # raises before anything changes
        if v5 and connect.maximum_packet_size is not None:
            # Whether the client can be served must not depend on the values
            # granted: checked with every property that may appear
            # [MQTT-3.1.2-24].
            self._encode(
                attrs.evolve(
                    ack,
                    session_present=True,
                    session_expiry_interval=0xFFFFFFFF,
                    server_keep_alive=0xFFFF,
                )
            )
        if session is not None:
            self._session = session
        elif self._session is None or not session_present:
            self._session = ServerSession(max_queued=config.max_queued_messages)
        if not session_present:
            self._session.clear()
        if assigned_client_identifier is not None:
            self.client_id = assigned_client_identifier
        self._keep_alive = keep_alive
        outbound = self._session.outbound
        outbound.send_quota = min(
            connect.receive_maximum or 65535 if v5 else 65535, config.max_inflight_messages
        )
        self._write(data)
        self._move(Input.SEND_CONNACK)
        if session_present or self._version == ProtocolVersion.MQTT_3_1:
            self._resend_session()
        self._waiting_bytes = 0
        held = self._held
        if held:
            # What waited during an authentication exchange is read first.
            self._incoming[: self._incoming_pos] = held
            self._incoming_pos = 0
        self._held = None

    def refuse(
        self,
        reason_code: ReasonCode,
        *,
        reason_string: str | None = None,
        server_reference: str | None = None,
        user_properties: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Refuse the CONNECT: a refusing CONNACK, then the connection closes
        [MQTT-3.2.2-6]. Nothing the client sent after CONNECT is read
        [MQTT-3.1.4-5], and events not yet taken are dropped.

        ``reason_code`` is an MQTT 5 CONNACK code (0x80 or above); a 3.1/3.1.1
        client gets the closest return code (0x86 → 4, 0x87 → 5, 0x85 → 2,
        0x84 → 1, others → 3).

        :raises LocalProtocolError: no CONNECT waits, or not a failure code.
        """
        self._waiting_connect("refuse()")
        code = ReasonCode(reason_code)
        if code < 0x80:
            raise LocalProtocolError(f"refuse() needs a failure code, not {code!r}")
        v5 = self._version == _V5
        ack = ConnAckPacket(
            False,
            code,
            reason_string=reason_string if v5 else None,
            server_reference=server_reference if v5 else None,
            user_properties=tuple(user_properties) if v5 else (),
        )
        try:
            data = self._encode(ack)
        except LocalProtocolError:
            data = self._encode(ConnAckPacket(False, code))
        self._events.clear()
        self._write(data)
        self._move(Input.SEND_CONNACK_REFUSED)
        self._close(Disconnected(code))

    def disconnect(
        self,
        reason_code: ReasonCode = ReasonCode.NORMAL_DISCONNECTION,
        *,
        reason_string: str | None = None,
        server_reference: str | None = None,
        user_properties: Iterable[tuple[str, str]] = (),
    ) -> None:
        """End the connection: DISCONNECT with ``reason_code`` in MQTT 5 (the
        reason string is dropped if the packet would not fit the client's
        Maximum Packet Size [MQTT-3.14.2-3]); 3.1/3.1.1 have no server
        DISCONNECT, so the stream just closes. Events not yet taken are
        dropped; :class:`~mqttproto.events.Disconnected` with the code is the
        last one. Flush :meth:`data_to_send`, then close the transport.

        :raises LocalProtocolError: not connected (before CONNACK, use
            :meth:`refuse`).
        """
        self._connected("disconnect()")
        code = ReasonCode(reason_code)
        if self._version == _V5:
            packet = DisconnectPacket(
                code,
                reason_string=reason_string,
                server_reference=server_reference,
                user_properties=tuple(user_properties),
            )
            try:
                self._write(self._encode(packet))
            except LocalProtocolError:
                with contextlib.suppress(LocalProtocolError):
                    self._write(self._encode(DisconnectPacket(code)))
        self._events.clear()
        self._move(Input.SEND_DISCONNECT)
        self._close(Disconnected(code, reason_string=reason_string))

    # -- internals ----------------------------------------------------------------

    def _move(self, event: Input) -> None:
        super()._move(event)
        # Kept with the state, so that publish_prepared's hot path reads one number.
        self._plain_limit = (
            self._max_out if self.state is _CONNECTED and not self._aliasing else -1
        )

    def _queue(self, packets: list[Packet]) -> None:
        """Packets to handle after those already waiting (the list is kept)."""
        if self._incoming_pos >= len(self._incoming):
            self._incoming = packets
            self._incoming_pos = 0
        else:
            self._incoming.extend(packets)

    def _write(self, data: bytes) -> None:
        self._out.append(data)
        self.bytes_to_send += len(data)

    def _send(self, packet: Packet) -> None:
        self._write(self._encode(packet))

    def _close(self, event: Disconnected) -> None:
        """The connection is over: forget what belongs to it, report it last."""
        self._incoming = []
        self._incoming_pos = 0
        self._incoming_error = None
        self._held = None
        self._pending_subscribes.clear()
        self._pending_unsubscribes.clear()
        self._unacked.clear()
        self._reauth = False
        self._events.append(event)

    def _waiting_connect(self, what: str) -> ConnectPacket:
        connect = self._connect
        if self.state is not _S.CONNECTING or connect is None or self._auth_turn is not _APP:
            raise LocalProtocolError(f"{what} answers a CONNECT (or AUTH) waiting for it")
        return connect

    def _connected(self, what: str) -> None:
        if self.state is not _S.CONNECTED:
            raise LocalProtocolError(f"{what} while {self.state.value}")

