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
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator, Sequence
from typing import ClassVar

import attrs

from ._connection import Connection
from ._keepalive import receive_deadline
from ._server_flows import InflightMessage, ServerFlows, ServerSession
from ._state import ConnectionState, Input
from .codec import PacketReader, PreparedPublish, encode_ack
from .config import MAX_PACKET_SIZE, ServerConfig
from .enums import PacketType, ProtocolVersion, QoS, ReasonCode
from .errors import ConnectRefusal, LocalProtocolError, RemoteProtocolError
from .events import (
    AuthReceived,
    ConnectRequested,
    Disconnected,
    Event,
    SubscribeRequested,
    UnsubscribeRequested,
)
from .packets import (
    AuthPacket,
    ConnAckPacket,
    ConnectPacket,
    DisconnectPacket,
    Packet,
    PubAckPacket,
    PublishPacket,
    PubRecPacket,
    SubAckPacket,
    SubscribePacket,
    UnsubAckPacket,
    UnsubscribePacket,
)

__all__ = ["InflightMessage", "ServerConnection", "ServerSession"]

_S = ConnectionState
_P = PacketType
_C = ReasonCode
_V5 = ProtocolVersion.MQTT_5_0
_QOS: dict[int, QoS] = {int(q): q for q in QoS}

#: What a server may receive in each state. In CONNECTING only AUTH and
#: DISCONNECT are read; anything else the client sends right after CONNECT
#: waits until the application accepted it [MQTT-3.1.4-5].
_RECEIVABLE: dict[ConnectionState, frozenset[PacketType]] = {
    # [MQTT-3.1.0-1]: the first packet is CONNECT (the reader refuses others).
    _S.IDLE: frozenset({_P.CONNECT}),
    _S.CONNECTING: frozenset({_P.AUTH, _P.DISCONNECT}),
    # A second CONNECT is a protocol error [MQTT-3.1.0-2].
    _S.CONNECTED: frozenset(
        {
            _P.PUBLISH,
            _P.PUBACK,
            _P.PUBREC,
            _P.PUBREL,
            _P.PUBCOMP,
            _P.SUBSCRIBE,
            _P.UNSUBSCRIBE,
            _P.PINGREQ,
            _P.DISCONNECT,
            _P.AUTH,
        }
    ),
    _S.CLOSED: frozenset(),
}

#: Whose turn it is while CONNECTING: the application's (after CONNECT, or
#: after the client's AUTH) or the client's (after our AUTH challenge).
_APP, _CLIENT = True, False


def _utf8_length(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


class ServerConnection(ServerFlows, Connection):
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

    RECEIVABLE = _RECEIVABLE
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
        "_auth_turn",
        "_client_alias_maximum",
        "_connect",
        "_events",
        "_held",
        "_held_data",
        "_keep_alive",
        "_opened_at",
        "_out_bytes",
        "_pending_subscribes",
        "_pending_unsubscribes",
        "_reauth",
        "_session",
        "_topic_chars_ok",
        "_unacked",
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
        self._events: deque[Event] = deque()
        self._opened_at = now
        if now is not None:
            self._last_received = now
        self._connect: ConnectPacket | None = None
        #: The client identifier in force (the assigned one, if any).
        self.client_id = ""
        self._keep_alive = 0
        self._session = ServerSession(max_queued=config.max_queued_messages)
        self._auth_turn = _APP
        #: A re-authentication whose answer the application owes.
        self._reauth = False
        #: While the application decides on the CONNECT: the packets that
        #: came with it, then the bytes that came after (bounded).
        self._held: list[Packet] | None = None
        self._held_data: bytearray | None = None
        self._out_bytes = 0
        self._client_alias_maximum = 0
        self._aliases_out: OrderedDict[str, int] = OrderedDict()
        self._acks_fit = True
        self._pending_subscribes: dict[int, int] = {}
        self._pending_unsubscribes: dict[int, int] = {}
        #: QoS 1/2 messages reported and not yet acknowledged by the application.
        self._unacked: dict[int, QoS] = {}
        #: Topic names this many characters long or shorter are within
        #: ``max_topic_length`` whatever they hold (4 UTF-8 bytes at most each).
        self._topic_chars_ok = config.max_topic_length // 4

    # -- what the caller sees -------------------------------------------------

    @property
    def keep_alive(self) -> int:
        """The keep-alive in force once accepted (the clamped or imposed one)."""
        return self._keep_alive

    @property
    def session(self) -> ServerSession:
        """The QoS state of the session this connection serves; keep it for
        the client's next connection if the session is to outlive this one."""
        return self._session

    @property
    def client_maximum_packet_size(self) -> int:
        """The largest packet the client accepts (its Maximum Packet Size)."""
        limit = self._peer_max_packet_size
        return MAX_PACKET_SIZE if limit is None else limit

    @property
    def send_window(self) -> int:
        """How many more QoS 1/2 messages may go out now; past it :meth:`publish`
        queues them (the client's Receive Maximum, at most
        ``max_inflight_messages``)."""
        outbound = self._session.outbound
        if outbound.queue:
            return 0
        return max(0, outbound.send_quota - len(outbound.inflight))

    @property
    def bytes_to_send(self) -> int:
        """Bytes waiting for :meth:`data_to_send`."""
        return self._out_bytes

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
        Returning None changes nothing; events are not lost if the caller
        also calls :meth:`receive_data` before draining them.
        """
        events = self._events
        return events.popleft() if events else None

    def events(self) -> Iterator[Event]:
        """Drain the pending events, in order (see :meth:`next_event`)."""
        events = self._events
        while events:
            yield events.popleft()

    def receive_data(self, data: bytes, now: float) -> None:
        """Feed bytes received from the client at time ``now``.

        Complete packets are handled at once: what they mean becomes events
        (:meth:`next_event`) and what the protocol answers by itself
        (PINGRESP, PUBCOMP, PUBREL, an ack of a retransmitted QoS 2 message)
        goes to :meth:`data_to_send`. A partial packet waits for the rest;
        keep-alive counts whole packets only. While the application has not
        answered a CONNECT, what follows it is held, up to
        ``max_packet_size`` bytes, and read once the CONNECT is accepted
        (never, if it is refused) [MQTT-3.1.4-5]. Bytes after the connection
        closed are ignored.

        :raises RemoteProtocolError: the client broke the protocol (a
            malformed packet, a packet too large, a packet not allowed now, a
            limit the server announced exceeded). The goodbye with its reason
            code is already queued (MQTT 5 DISCONNECT, or a refusing CONNACK
            before CONNECT was answered; 3.1.1: nothing, the stream closes),
            the connection is CLOSED and
            :class:`~mqttproto.events.Disconnected` is the last event. Events
            of the packets before the faulty one come first.
        """
        if self._opened_at is None:
            self._opened_at = now
        if self._held is not None:
            self._hold_data(data, now)
            return
        super().receive_data(data, now)

    def receive_eof(self, now: float) -> None:
        """The client closed its side of the stream: the connection ends
        (:class:`~mqttproto.events.Disconnected` with 0x80, ``by_client``
        False: it said nothing)."""
        if self.state is not _S.CLOSED:
            self._held = self._held_data = None
        super().receive_eof(now)

    def data_to_send(self, now: float) -> bytes:
        """The bytes to write to the transport, all of them, in order; b"" if
        none. ``now`` is when they go out."""
        self._out_bytes = 0
        return super().data_to_send(now)

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must be called next; None: no timer.

        Before the CONNECT is answered (and during an enhanced authentication
        exchange) it is the connect timeout from :attr:`opened
        <ServerConfig.connect_timeout>`; once connected, one and a half times
        the keep-alive after the last packet received [MQTT-3.1.2-24].
        """
        state = self.state
        if state is _S.CONNECTED:
            return receive_deadline(self._last_received, self._keep_alive)
        if state is _S.CLOSED or self._opened_at is None:
            return None
        timeout = self.config.connect_timeout
        return None if timeout is None else self._opened_at + timeout

    def handle_timer(self, now: float) -> None:
        """Close the connection if its deadline (:meth:`get_timer`) passed.

        A silent client is closed: MQTT 5 clients get DISCONNECT 0x8D *Keep
        alive timeout* [MQTT-3.1.2-22]; a connection without an answered
        CONNECT within the connect timeout is closed without a word
        (:class:`~mqttproto.events.Disconnected` 0xA0). Calling it early
        changes nothing.
        """
        if self._opened_at is None:
            self._opened_at = now
        deadline = self.get_timer()
        if deadline is None or now < deadline:
            return
        if self.state is _S.CONNECTED:
            if self._version == _V5:
                self._send(DisconnectPacket(_C.KEEP_ALIVE_TIMEOUT))
            reason = _C.KEEP_ALIVE_TIMEOUT
        else:
            reason = _C.MAXIMUM_CONNECT_TIME
        self._move(Input.TIMEOUT)
        self._close(Disconnected(reason))

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
        requested = connect.keep_alive
        keep_alive = requested
        if keep_alive == 0 or keep_alive > config.max_keep_alive:
            keep_alive = config.max_keep_alive
        elif keep_alive < config.min_keep_alive:
            keep_alive = config.min_keep_alive
        server_keep_alive = config.server_keep_alive
        if server_keep_alive is not None:
            keep_alive = server_keep_alive  # [MQTT-3.2.2-21]
        elif keep_alive != requested:
            # Clamped: a v5 client is told and must use it; a 3.x client
            # cannot be told, and is held to it silently (3.1.1 section
            # 3.1.2.10 lets a server close an inactive client at any time).
            server_keep_alive = keep_alive
        present = session_present and self._version != ProtocolVersion.MQTT_3_1
        if v5:
            ack = ConnAckPacket(
                present,
                _C.SUCCESS,
                session_expiry_interval=session_expiry_interval,
                receive_maximum=config.receive_maximum if config.receive_maximum != 65535 else None,
                maximum_qos=_QOS[config.maximum_qos] if config.maximum_qos < 2 else None,
                retain_available=False if not config.retain_available else None,
                maximum_packet_size=config.max_packet_size,
                assigned_client_identifier=assigned_client_identifier,
                topic_alias_maximum=config.topic_alias_maximum or None,
                wildcard_subscription_available=(
                    False if not config.wildcard_subscription_available else None
                ),
                subscription_identifiers_available=(
                    False if not config.subscription_identifiers_available else None
                ),
                shared_subscription_available=(
                    False if not config.shared_subscription_available else None
                ),
                server_keep_alive=server_keep_alive,
                response_information=response_information,
                server_reference=server_reference,
                reason_string=reason_string,
                user_properties=tuple(user_properties),
                authentication_method=connect.authentication_method,
                authentication_data=authentication_data,
            )
        else:
            ack = ConnAckPacket(present, _C.SUCCESS)
        data = self._encode(ack)  # raises before anything changes
        if session is not None:
            self._session = session
        elif not session_present:
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
        held, data_held = self._held, self._held_data
        self._held = self._held_data = None
        now = self._last_received
        if held:
            with contextlib.suppress(RemoteProtocolError):
                self._dispatch(held, now)
        if data_held and not self.closed:
            with contextlib.suppress(RemoteProtocolError):
                Connection.receive_data(self, bytes(data_held), now)

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
        self._held = self._held_data = None
        self._events.clear()
        self._write(data)
        self._move(Input.SEND_CONNACK_REFUSED)
        self._close(Disconnected(code))

    def auth(
        self,
        reason_code: ReasonCode = ReasonCode.CONTINUE_AUTHENTICATION,
        *,
        authentication_data: bytes | None = None,
        reason_string: str | None = None,
        user_properties: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Send AUTH with the CONNECT's Authentication Method (MQTT 5 [MQTT-4.12]).

        During CONNECT: 0x18 *Continue authentication* challenges the client
        (its answer comes as :class:`~mqttproto.events.AuthReceived`); end
        the exchange with :meth:`accept` or :meth:`refuse`. While connected,
        after the client's re-authentication AUTH: 0x18 to continue, 0x00
        *Success* when it succeeded (a failure ends the connection:
        :meth:`disconnect`).

        :raises LocalProtocolError: no AUTH is owed now, or the client used
            no authentication method.
        """
        code = ReasonCode(reason_code)
        connect = self._connect
        method = connect.authentication_method if connect is not None else None
        if method is None:
            raise LocalProtocolError("auth() needs a CONNECT with an authentication method")
        if self.state is _S.CONNECTING:
            self._waiting_connect("auth()")
            if code != _C.CONTINUE_AUTHENTICATION:
                raise LocalProtocolError("during CONNECT, AUTH continues; accept() succeeds")
        elif self.state is _S.CONNECTED:
            if not self._reauth:
                raise LocalProtocolError("auth() while connected answers a re-authentication")
            if code not in (_C.CONTINUE_AUTHENTICATION, _C.SUCCESS):
                raise LocalProtocolError("a failed re-authentication ends with disconnect()")
        else:
            raise LocalProtocolError(f"auth() while {self.state.value}")
        data = self._encode(
            AuthPacket(
                code,
                authentication_method=method,
                authentication_data=authentication_data,
                reason_string=reason_string,
                user_properties=tuple(user_properties),
            )
        )
        self._write(data)
        self._move(Input.SEND_AUTH)
        if self.state is _S.CONNECTING:
            # The client's turn: what it sends is read again.
            self._auth_turn = _CLIENT
            held, data_held = self._held, self._held_data
            self._held = self._held_data = None
            now = self._last_received
            if held:
                with contextlib.suppress(RemoteProtocolError):
                    self._dispatch(held, now)
            if data_held and not self.closed:
                with contextlib.suppress(RemoteProtocolError):
                    Connection.receive_data(self, bytes(data_held), now)
        elif code == _C.SUCCESS:
            self._reauth = False

    def acknowledge(
        self,
        packet_id: int,
        reason_code: ReasonCode = ReasonCode.SUCCESS,
        *,
        reason_string: str | None = None,
        user_properties: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Acknowledge a QoS 1/2 message from :class:`~mqttproto.events.MessageReceived`:
        PUBACK (QoS 1) or PUBREC (QoS 2), which the application sends when it
        has taken the message (stored it, routed it). The client's PUBREL is
        then answered with PUBCOMP by the role.

        In MQTT 5 a failure ``reason_code`` refuses the message (a refused QoS
        2 flow ends there); 3.1/3.1.1 acks carry no code, so the message is
        acknowledged as it stands. After the connection closed this does
        nothing: the client sends the message again on its next connection.

        :raises LocalProtocolError: no received message with that identifier
            waits for an acknowledgement, or a code PUBACK cannot carry.
        """
        if self.state is _S.CLOSED:
            return
        qos = self._unacked.get(packet_id)
        if qos is None:
            raise LocalProtocolError(f"no received message with packet id {packet_id} awaits an ack")
        v5 = self._version == _V5
        code = int(reason_code) if v5 else 0
        if reason_string is None and not user_properties:
            kind = _P.PUBACK if qos == 1 else _P.PUBREC
            data = encode_ack(kind, packet_id, code, version=_V5 if v5 else ProtocolVersion.MQTT_3_1_1)
        else:
            cls = PubAckPacket if qos == 1 else PubRecPacket
            ack = cls(
                packet_id,
                ReasonCode(code),
                reason_string=reason_string if v5 else None,
                user_properties=tuple(user_properties) if v5 else (),
            )
            data = self._encode(ack)
        del self._unacked[packet_id]
        if qos == QoS.EXACTLY_ONCE and code < 0x80:
            # Until PUBREL, a resent PUBLISH with this id is not delivered
            # again [MQTT-4.3.3-10]; that outlives the connection.
            self._session.inbound.awaiting_release.add(packet_id)
        if self._acks_fit or len(data) <= self.client_maximum_packet_size:
            self._write(data)

    def suback(
        self,
        packet_id: int,
        reason_codes: Sequence[ReasonCode | int],
        *,
        reason_string: str | None = None,
        user_properties: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Answer a :class:`~mqttproto.events.SubscribeRequested`: one code
        per subscription, in order [MQTT-3.8.4-6] (the granted QoS 0x00-0x02,
        or a failure); 3.1.1 gets 0x80 for any failure.

        :raises LocalProtocolError: no such SUBSCRIBE waits, or the number of
            codes is not the number of subscriptions.
        """
        self._connected("suback()")
        count = self._pending_subscribes.get(packet_id)
        if count is None:
            raise LocalProtocolError(f"no SUBSCRIBE with packet id {packet_id} waits for SUBACK")
        codes = [ReasonCode(c) for c in reason_codes]
        if len(codes) != count:
            raise LocalProtocolError(f"SUBACK needs {count} reason codes, not {len(codes)}")
        if self._version == _V5:
            ack = SubAckPacket(
                packet_id,
                codes,
                reason_string=reason_string,
                user_properties=tuple(user_properties),
            )
        else:
            ack = SubAckPacket(packet_id, [ReasonCode(c.to_suback_v3()) for c in codes])
        data = self._encode(ack)
        del self._pending_subscribes[packet_id]
        self._write(data)

    def unsuback(
        self,
        packet_id: int,
        reason_codes: Sequence[ReasonCode | int] | None = None,
        *,
        reason_string: str | None = None,
        user_properties: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Answer a :class:`~mqttproto.events.UnsubscribeRequested`
        [MQTT-3.10.4-4]. MQTT 5 has one code per filter (None: 0x00 *Success*
        for each); 3.1/3.1.1 have none.

        :raises LocalProtocolError: no such UNSUBSCRIBE waits, or the wrong
            number of codes.
        """
        self._connected("unsuback()")
        count = self._pending_unsubscribes.get(packet_id)
        if count is None:
            raise LocalProtocolError(
                f"no UNSUBSCRIBE with packet id {packet_id} waits for UNSUBACK"
            )
        if self._version == _V5:
            codes = [_C.SUCCESS] * count if reason_codes is None else [
                ReasonCode(c) for c in reason_codes
            ]
            if len(codes) != count:
                raise LocalProtocolError(f"UNSUBACK needs {count} reason codes, not {len(codes)}")
            ack = UnsubAckPacket(
                packet_id, codes, reason_string=reason_string, user_properties=tuple(user_properties)
            )
        else:
            ack = UnsubAckPacket(packet_id, ())
        data = self._encode(ack)
        del self._pending_unsubscribes[packet_id]
        self._write(data)

    def publish(
        self,
        topic: str,
        payload: bytes | str = b"",
        *,
        qos: QoS | int = QoS.AT_MOST_ONCE,
        retain: bool = False,
        payload_format_indicator: int | None = None,
        message_expiry_interval: int | None = None,
        response_topic: str | None = None,
        correlation_data: bytes | None = None,
        user_properties: Iterable[tuple[str, str]] = (),
        content_type: str | None = None,
        subscription_identifiers: Iterable[int] = (),
    ) -> int | None:
        """Send an application message to the client; its packet id (None for QoS 0).

        QoS 1/2 messages beyond the client's Receive Maximum (at most
        ``max_inflight_messages``) wait in a queue of ``max_queued_messages``
        and go out in order as acknowledgements come
        (:class:`~mqttproto.events.PublishAcknowledged`). Topic aliases are
        chosen by themselves within the client's Topic Alias Maximum
        (``auto_topic_alias``). In MQTT 3.1/3.1.1 the MQTT 5 properties must
        be left out.

        :raises LocalProtocolError: not connected, the queue is full, the
            message breaks a rule, or it is larger than the client's Maximum
            Packet Size [MQTT-3.1.2-25].
        """
        qos_ = _QOS.get(qos)
        if qos_ is None:
            raise LocalProtocolError(f"QoS must be 0, 1 or 2, not {qos!r}")
        self._connected("publish()")
        if isinstance(payload, str):
            payload = payload.encode()
        session = self._session
        outbound = session.outbound
        send_now = not qos_ or outbound.has_room()
        if qos_ and not send_now:
            outbound.check_queue_room()
        packet_id = session.packet_ids.peek() if qos_ else None
        packet = PublishPacket(
            topic,
            payload,
            qos_,
            retain,
            False,
            packet_id,
            payload_format_indicator=payload_format_indicator,
            message_expiry_interval=message_expiry_interval,
            response_topic=response_topic,
            correlation_data=correlation_data,
            user_properties=tuple(user_properties),
            subscription_identifiers=tuple(subscription_identifiers),
            content_type=content_type,
        )
        data = self._encode(packet)
        if send_now:
            self._send_publish(packet, data)
        if packet_id is not None:
            session.packet_ids.allocate()
            if send_now:
                outbound.start(packet)
            else:
                outbound.enqueue(packet)
        return packet_id

    def publish_prepared(self, prepared: PreparedPublish) -> int | None:
        """Send a message encoded once for many clients (see
        :class:`~mqttproto.codec.PreparedPublish`); its packet id (None for QoS 0).

        As :meth:`publish`, without encoding: the prepared bytes are written
        with a packet identifier of this connection's. The prepared version
        must be this connection's.

        :raises LocalProtocolError: as :meth:`publish`.
        """
        self._connected("publish_prepared()")
        if (prepared.version == _V5) is not (self._version == _V5):
            # 3.1 and 3.1.1 PUBLISH packets are the same; 5.0 ones are not.
            raise LocalProtocolError(
                f"prepared for {prepared.version!r}, not for this connection's {self._version!r}"
            )
        if prepared.size > self.client_maximum_packet_size:
            raise LocalProtocolError(
                f"PUBLISH of {prepared.size} bytes exceeds the client's Maximum Packet Size"
                " [MQTT-3.1.2-25]"
            )
        if not prepared.qos:
            self._send_prepared(prepared, None)
            return None
        session = self._session
        outbound = session.outbound
        send_now = outbound.has_room()
        if not send_now:
            outbound.check_queue_room()
        packet_id = session.packet_ids.allocate()
        if send_now:
            self._send_prepared(prepared, packet_id)
            outbound.start(prepared.packet, packet_id)
        else:
            outbound.enqueue(attrs.evolve(prepared.packet, packet_id=packet_id))
        return packet_id

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

    def close(self, reason_code: ReasonCode = ReasonCode.UNSPECIFIED_ERROR) -> None:
        """End the connection without a word: nothing more is sent (what is
        already in :meth:`data_to_send` still is). For a server that stops,
        or a connection it gives up on before answering its CONNECT; once
        connected, :meth:`disconnect` tells an MQTT 5 client why. Events not
        yet taken are dropped; :class:`~mqttproto.events.Disconnected` with
        ``reason_code`` is the last one. Nothing happens if already closed.
        """
        if self.state is _S.CLOSED:
            return
        self._events.clear()
        self._move(Input.TIMEOUT)
        self._close(Disconnected(ReasonCode(reason_code)))

    # -- internals ----------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        self._out.append(data)
        self._out_bytes += len(data)

    def _send(self, packet: Packet) -> None:
        self._write(self._encode(packet))

    def _close(self, event: Disconnected) -> None:
        """The connection is over: forget what belongs to it, report it last."""
        self._held = self._held_data = None
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

    def _accepts_before_start(self) -> bool:
        return True

    def _pause_input(self, remaining: Iterator[Packet]) -> bool:
        if self.state is _S.CONNECTING and self._auth_turn is _APP:
            # The application decides: what came with the CONNECT waits.
            held = self._held
            if held is None:
                held = self._held = []
            held.extend(remaining)
            return True
        return False

    def _hold_data(self, data: bytes, now: float) -> None:
        """Bytes that came while the application decides on the CONNECT: read
        once it is accepted, never if it is refused [MQTT-3.1.4-5]. Up to
        ``max_packet_size`` of them; more refuses it with 0x97 *Quota exceeded*."""
        if self.closed:
            return
        held = self._held_data
        if held is None:
            held = self._held_data = bytearray(data)
        else:
            held += data
        if len(held) > self.config.max_packet_size:
            error = RemoteProtocolError(
                "more than max_packet_size bytes sent before CONNECT was answered",
                _C.QUOTA_EXCEEDED,
            )
            self._held = self._held_data = None
            self._protocol_error(error, now)
            raise error

    def _too_many_properties(self, properties: tuple[tuple[str, str], ...]) -> bool:
        """Whether user properties pass ``max_user_properties`` / ``max_user_property_bytes``."""
        config = self.config
        if len(properties) > config.max_user_properties:
            return True
        limit = config.max_user_property_bytes
        size = sum(len(name) + len(value) for name, value in properties)
        if size * 4 <= limit:
            return False
        return sum(_utf8_length(name) + _utf8_length(value) for name, value in properties) > limit

    def _goodbye(self, exc: RemoteProtocolError) -> Packet | None:
        if self.state is _S.CONNECTED:
            if self._version == _V5:
                return DisconnectPacket(exc.reason_code, reason_string=str(exc)[:200])
            return None
        # Before CONNACK: a refusing CONNACK where the version is known
        # [MQTT-3.2.2-6 (3.1.1)] / [MQTT-3.2.2-7 (5.0)]; a malformed CONNECT
        # just closes in 3.1.1 [MQTT-3.1.4-1].
        version = self._version
        if isinstance(exc, ConnectRefusal):
            version = exc.protocol_version
            if version is None and exc.reason_code == _C.UNSUPPORTED_PROTOCOL_VERSION:
                # An unknown level: answered as 3.1.1 does, return code 1 [MQTT-3.1.2-2].
                version = ProtocolVersion.MQTT_3_1_1
        if version is None:
            return None
        self._version = version
        if version != _V5 and not isinstance(exc, ConnectRefusal):
            return None
        return ConnAckPacket(False, exc.reason_code)

    def _protocol_error(self, exc: RemoteProtocolError, now: float) -> None:
        if self.state is not _S.CLOSED:
            self._held = self._held_data = None
        super()._protocol_error(exc, now)

    def _connection_ended(self, reason_code: ReasonCode, now: float) -> None:
        self._close(Disconnected(reason_code))

    # -- packet handlers: the lifecycle ------------------------------------------

    def _on_connect(self, packet: Packet, now: float) -> None:
        assert isinstance(packet, ConnectPacket)
        self._move(Input.RECV_CONNECT)
        version = packet.protocol_version
        self._version = version
        self._connect = packet
        self.client_id = packet.client_id
        if version == _V5:
            self._peer_max_packet_size = packet.maximum_packet_size
            self._acks_fit = packet.maximum_packet_size is None or packet.maximum_packet_size >= 4
            self._client_alias_maximum = packet.topic_alias_maximum or 0
        config = self.config
        if _utf8_length(packet.client_id) > config.max_client_id_length:
            # [MQTT-3.1.3-8] (5.0) / [MQTT-3.1.3-9] (3.1.1): 0x85 / return code 2.
            raise ConnectRefusal(
                "client identifier too long", _C.CLIENT_IDENTIFIER_NOT_VALID, version
            )
        if version == _V5:
            properties = packet.user_properties
            if packet.will is not None:
                properties = properties + packet.will.user_properties
            if properties and self._too_many_properties(properties):
                raise ConnectRefusal("too many user properties", _C.QUOTA_EXCEEDED, version)
        elif packet.authentication_method is not None:
            raise RemoteProtocolError("authentication method outside MQTT 5")
        will = packet.will
        if will is not None:
            if will.qos > config.maximum_qos:
                raise ConnectRefusal("will QoS exceeds Maximum QoS", _C.QOS_NOT_SUPPORTED, version)
            if will.retain and not config.retain_available:
                raise ConnectRefusal(
                    "retained wills are not supported", _C.RETAIN_NOT_SUPPORTED, version
                )
            if will.topic.count("/") >= config.max_topic_levels:
                raise ConnectRefusal("will topic too deep", _C.TOPIC_NAME_INVALID, version)
            if _utf8_length(will.topic) > config.max_topic_length:
                raise ConnectRefusal("will topic too long", _C.TOPIC_NAME_INVALID, version)
        self._auth_turn = _APP
        self._events.append(
            ConnectRequested(
                packet.client_id,
                packet.clean_start,
                packet.keep_alive,
                packet.username,
                packet.password,
                packet.will,
                version,
                session_expiry_interval=packet.session_expiry_interval,
                receive_maximum=packet.receive_maximum,
                maximum_packet_size=packet.maximum_packet_size,
                topic_alias_maximum=packet.topic_alias_maximum,
                request_response_information=packet.request_response_information,
                request_problem_information=packet.request_problem_information,
                user_properties=packet.user_properties,
                authentication_method=packet.authentication_method,
                authentication_data=packet.authentication_data,
            )
        )

    def _on_auth(self, packet: Packet, now: float) -> None:
        assert isinstance(packet, AuthPacket)
        connect = self._connect
        assert connect is not None
        method = connect.authentication_method
        if method is None or packet.authentication_method != method:
            # [MQTT-4.12.0-5]: the same method throughout; no method, no AUTH.
            raise RemoteProtocolError("AUTH with a different or no authentication method")
        code = packet.reason_code
        if self.state is _S.CONNECTING:
            if self._auth_turn is _APP:
                raise RemoteProtocolError("AUTH before the server answered the previous one")
            if code != _C.CONTINUE_AUTHENTICATION:
                raise RemoteProtocolError("AUTH during CONNECT must continue authentication")
            self._move(Input.RECV_AUTH)
            self._auth_turn = _APP
        else:
            # Re-authentication [MQTT-4.12.1]: 0x19 starts it, 0x18 continues
            # it, each after the server's answer.
            if self._reauth:
                raise RemoteProtocolError("AUTH before the server answered the previous one")
            if code not in (_C.RE_AUTHENTICATE, _C.CONTINUE_AUTHENTICATION):
                raise RemoteProtocolError(f"unexpected AUTH {code.name}")
            self._move(Input.RECV_AUTH)
            self._reauth = True
        assert packet.authentication_method is not None
        self._events.append(
            AuthReceived(
                code,
                packet.authentication_method,
                packet.authentication_data,
                packet.reason_string,
                packet.user_properties,
            )
        )

    def _on_subscribe(self, packet: Packet, now: float) -> None:
        assert isinstance(packet, SubscribePacket)
        packet_id = packet.packet_id
        if packet_id in self._pending_subscribes:
            raise RemoteProtocolError(
                f"SUBSCRIBE {packet_id} while the previous one with that id waits for SUBACK"
            )
        if packet.user_properties and self._too_many_properties(packet.user_properties):
            # Refused as a whole: 0x97 for each filter (3.1.1: 0x80).
            self._pending_subscribes[packet_id] = len(packet.subscriptions)
            self.suback(packet_id, [_C.QUOTA_EXCEEDED] * len(packet.subscriptions))
            return
        for sub in packet.subscriptions:
            if sub.no_local and sub.topic_filter.startswith("$share/"):
                # [MQTT-3.8.3-4]: No Local on a shared subscription.
                raise RemoteProtocolError("No Local on a shared subscription")
        self._pending_subscribes[packet_id] = len(packet.subscriptions)
        self._events.append(
            SubscribeRequested(
                packet_id,
                tuple(packet.subscriptions),
                packet.subscription_identifier,
                packet.user_properties,
            )
        )

    def _on_unsubscribe(self, packet: Packet, now: float) -> None:
        assert isinstance(packet, UnsubscribePacket)
        if packet.user_properties and self._too_many_properties(packet.user_properties):
            # UNSUBACK has no quota code (MQTT 5.0 section 3.11.2.1): the
            # connection ends with DISCONNECT 0x97.
            raise RemoteProtocolError("too many user properties", _C.QUOTA_EXCEEDED)
        packet_id = packet.packet_id
        if packet_id in self._pending_unsubscribes:
            raise RemoteProtocolError(
                f"UNSUBSCRIBE {packet_id} while the previous one with that id waits for UNSUBACK"
            )
        self._pending_unsubscribes[packet_id] = len(packet.topic_filters)
        self._events.append(
            UnsubscribeRequested(packet_id, tuple(packet.topic_filters), packet.user_properties)
        )

    def _on_pingreq(self, packet: Packet, now: float) -> None:
        # [MQTT-3.12.4-1]: the server answers PINGREQ with PINGRESP.
        self._write(b"\xd0\x00")

    def _on_disconnect(self, packet: Packet, now: float) -> None:
        assert isinstance(packet, DisconnectPacket)
        connect = self._connect
        expiry = packet.session_expiry_interval
        if expiry and connect is not None and not connect.session_expiry_interval:
            # [MQTT-3.14.2-2]: 0 in CONNECT cannot become non-zero.
            raise RemoteProtocolError("session expiry interval raised in DISCONNECT")
        self._move(Input.RECV_DISCONNECT)
        self._close(
            Disconnected(
                packet.reason_code,
                server_reference=packet.server_reference,
                reason_string=packet.reason_string,
                session_expiry_interval=expiry,
                user_properties=packet.user_properties,
                by_client=True,
            )
        )

