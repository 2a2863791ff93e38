"""The client role: :class:`ClientConnection`.

A :class:`ClientConnection` is driven by whatever does the I/O: it is given
bytes received and the current time, and hands back events and bytes to send.
One object lives as long as the client's session, across network
connections: after a connection ends, :meth:`ClientConnection.connect` starts
the next one, and with ``clean_start=False`` the QoS 1/2 state carries over
and is resent [MQTT-4.4.0-1].
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator, Sequence
from typing import ClassVar

from ._client_flows import MessageFlows, ServerLimits
from ._connection import Connection
from ._keepalive import ping_due, ping_response_deadline
from ._qos import InboundFlow, OutboundFlow, PacketIdAllocator
from ._state import TRANSITIONS, ConnectionState, Input
from .codec import PacketReader, encode_packet
from .config import MAX_PACKET_SIZE, ClientConfig
from .enums import PacketType, ProtocolVersion, QoS, ReasonCode
from .errors import ConnectRefusal, LocalProtocolError, RemoteProtocolError
from .events import (
    AuthChallenged,
    ConnectionAccepted,
    ConnectionRefused,
    Disconnected,
    Event,
    PublishDiscarded,
    Reauthenticated,
    SubscribeAcknowledged,
    UnsubscribeAcknowledged,
)
from .packets import (
    AuthPacket,
    ConnAckPacket,
    ConnectPacket,
    DisconnectPacket,
    Packet,
    PingReqPacket,
    PubAckPacket,
    PublishPacket,
    PubRecPacket,
    SubAckPacket,
    SubscribePacket,
    Subscription,
    UnsubAckPacket,
    UnsubscribePacket,
    Will,
)
from .topics import is_shared_filter

__all__ = ["ClientConnection"]

_S = ConnectionState
_P = PacketType
_V5 = ProtocolVersion.MQTT_5_0
#: PINGREQ is the same two bytes in every version.
_PINGREQ = encode_packet(PingReqPacket(), version=ProtocolVersion.MQTT_3_1_1)
_QOS: dict[int, QoS] = {int(q): q for q in QoS}

#: What a client may receive in each state. The server sends CONNACK before
#: anything but AUTH [MQTT-3.2.0-1]; it never sends CONNECT, PUBLISH before
#: CONNACK, SUBSCRIBE, UNSUBSCRIBE or PINGREQ.
_RECEIVABLE: dict[ConnectionState, frozenset[PacketType]] = {
    _S.IDLE: frozenset(),
    _S.CONNECTING: frozenset({_P.CONNACK, _P.AUTH}),
    _S.CONNECTED: frozenset(
        {
            _P.PUBLISH,
            _P.PUBACK,
            _P.PUBREC,
            _P.PUBREL,
            _P.PUBCOMP,
            _P.SUBACK,
            _P.UNSUBACK,
            _P.PINGRESP,
            _P.DISCONNECT,
            _P.AUTH,
        }
    ),
    _S.CLOSED: frozenset(),
}


class ClientConnection(MessageFlows, Connection):
    """The client side of an MQTT connection, without I/O.

    :param version: the protocol version to speak (3.1, 3.1.1 or 5.0).
    :param config: limits and switches; see :class:`~mqttproto.config.ClientConfig`.

    The loop an adapter runs::

        conn.connect(client_id="sensor-1")
        sock.sendall(conn.data_to_send(now()))
        while not conn.closed:
            conn.receive_data(sock.recv(65536), now())   # or receive_eof(now())
            for event in conn.events(): ...
            sock.sendall(conn.data_to_send(now()))
            # and call handle_timer(now()) when get_timer() is reached
    """

    RECEIVABLE = _RECEIVABLE
    HANDLERS: ClassVar[dict[PacketType, str]] = {
        _P.CONNACK: "_on_connack",
        _P.PUBLISH: "_on_publish",
        _P.PUBACK: "_on_puback",
        _P.PUBREC: "_on_pubrec",
        _P.PUBREL: "_on_pubrel",
        _P.PUBCOMP: "_on_pubcomp",
        _P.SUBACK: "_on_suback",
        _P.UNSUBACK: "_on_unsuback",
        _P.PINGRESP: "_on_pingresp",
        _P.DISCONNECT: "_on_disconnect",
        _P.AUTH: "_on_auth",
    }
    _role = "client"

    def __init__(
        self,
        version: ProtocolVersion = ProtocolVersion.MQTT_5_0,
        *,
        config: ClientConfig | None = None,
    ) -> None:
        version = ProtocolVersion(version)
        super().__init__(version)
        self._version: ProtocolVersion = version
        self._events: deque[Event] = deque()
        self.config = config if config is not None else ClientConfig()
        # Session state: survives the network connection.
        self._packet_ids = PacketIdAllocator()
        self._outbound = OutboundFlow(max_queued=self.config.max_queued_messages)
        self._inbound = InboundFlow(receive_maximum=self.config.receive_maximum)
        self._session_may_persist = False
        self._has_connected = False
        self.client_id = ""
        # Connection state: reset by connect().
        self._connect: ConnectPacket | None = None
        self._keep_alive = 0
        self._connect_sent_at: float | None = None
        self._ping_sent_at: float | None = None
        self._limits = ServerLimits()
        self._pending_subscribes: dict[int, int] = {}
        self._pending_unsubscribes: dict[int, int] = {}
        self._aliases_out: OrderedDict[str, int] = OrderedDict()
        self._inbound_alias_max = self.config.topic_alias_maximum
        self._auth_challenged = False
        self._reauthenticating = False
        self._auto_ack = self.config.auto_acknowledge
        self._acks_fit = True

    # -- properties -------------------------------------------------------------

    @property
    def version(self) -> ProtocolVersion:
        return self._version

    @property
    def keep_alive(self) -> int:
        """The keep-alive in force (the Server Keep Alive once CONNACK set one)."""
        return self._keep_alive

    @property
    def inflight(self) -> int:
        """Outgoing QoS 1/2 messages sent and not yet completely acknowledged."""
        return len(self._outbound.inflight)

    @property
    def queued(self) -> int:
        """Outgoing QoS 1/2 messages waiting for room in the server's window."""
        return len(self._outbound.queue)

    # -- events -------------------------------------------------------------

    def next_event(self) -> Event | None:
        """The next event, or None when more data (or time) is needed.

        Events are made by :meth:`receive_data`, :meth:`receive_eof`,
        :meth:`handle_timer` and some calls (``connect`` after a lost session,
        ``disconnect``): :class:`~mqttproto.events.ConnectionAccepted` or
        :class:`~mqttproto.events.ConnectionRefused`,
        :class:`~mqttproto.events.AuthChallenged`,
        :class:`~mqttproto.events.Reauthenticated`,
        :class:`~mqttproto.events.MessageReceived` (acknowledge it with
        :meth:`acknowledge` if ``auto_acknowledge`` is off),
        :class:`~mqttproto.events.PublishAcknowledged`,
        :class:`~mqttproto.events.PublishDiscarded`,
        :class:`~mqttproto.events.SubscribeAcknowledged`,
        :class:`~mqttproto.events.UnsubscribeAcknowledged`, and
        :class:`~mqttproto.events.Disconnected`, the last one of each network
        connection: after it the state is CLOSED, and only a new
        :meth:`connect` makes more. Returning None changes nothing; it never
        raises (a peer's fault was raised by the call that fed the bytes).
        """
        events = self._events
        return events.popleft() if events else None

    def events(self) -> Iterator[Event]:
        """Drain the pending events, in order (see :meth:`next_event`)."""
        events = self._events
        while events:
            yield events.popleft()

    # -- commands -------------------------------------------------------------

    def connect(
        self,
        *,
        client_id: str = "",
        clean_start: bool = True,
        keep_alive: int = 60,
        will: Will | None = None,
        username: str | None = None,
        password: bytes | str | None = None,
        session_expiry_interval: int | None = None,
        receive_maximum: int | None = None,
        maximum_packet_size: int | None = None,
        topic_alias_maximum: int | None = None,
        request_response_information: bool | None = None,
        request_problem_information: bool | None = None,
        user_properties: Iterable[tuple[str, str]] = (),
        authentication_method: str | None = None,
        authentication_data: bytes | None = None,
    ) -> None:
        """Start a network connection: queue CONNECT.

        Allowed before the first connection and after one ended. With
        ``clean_start=False`` the session of the previous connection resumes
        if the server still has it (``session_present`` in
        :class:`~mqttproto.events.ConnectionAccepted`).

        In MQTT 3.1/3.1.1 the MQTT 5 arguments must be left out; the limits
        from the config are still enforced locally.
        """
        if (self.state, Input.SEND_CONNECT) not in TRANSITIONS:
            raise LocalProtocolError(f"connect() while {self.state.value}")
        config = self.config
        receive_max = config.receive_maximum if receive_maximum is None else receive_maximum
        packet_max = (
            config.maximum_packet_size if maximum_packet_size is None else maximum_packet_size
        )
        alias_max = (
            config.topic_alias_maximum if topic_alias_maximum is None else topic_alias_maximum
        )
        if isinstance(password, str):
            password = password.encode()
        v5 = self._version == _V5
        packet = ConnectPacket(
            client_id=client_id,
            protocol_version=self._version,
            clean_start=clean_start,
            keep_alive=keep_alive,
            username=username,
            password=password,
            will=will,
            session_expiry_interval=session_expiry_interval,
            # Protocol defaults are left out of the packet, so a 3.1.1
            # connection can share the config.
            receive_maximum=receive_max if v5 and receive_max != 65535 else None,
            maximum_packet_size=packet_max if v5 and packet_max != MAX_PACKET_SIZE else None,
            topic_alias_maximum=alias_max if v5 and alias_max else None,
            request_response_information=request_response_information,
            request_problem_information=request_problem_information,
            user_properties=user_properties,
            authentication_method=authentication_method,
            authentication_data=authentication_data,
        )
        if not v5 and (receive_maximum or maximum_packet_size or topic_alias_maximum):
            raise LocalProtocolError(
                "receive_maximum, maximum_packet_size and topic_alias_maximum are MQTT 5 only"
            )
        if not 0 <= keep_alive <= 65535:
            raise LocalProtocolError("keep_alive must be between 0 and 65535")
        # Validates every field for this version before anything changes.
        self._peer_max_packet_size = None
        data = self._encode(packet)

        discarded: list[int] = []
        if clean_start:
            discarded = self._discard_session()
        self._move(Input.SEND_CONNECT)
        self._connect = packet
        self.client_id = client_id
        self._keep_alive = keep_alive
        self._connect_sent_at = None
        self._ping_sent_at = None
        self._limits = ServerLimits()
        self._reader = PacketReader(version=self._version, max_packet_size=packet_max)
        self._inbound.receive_maximum = receive_max
        self._inbound_alias_max = alias_max
        self._aliases_in.clear()
        self._aliases_out.clear()
        self._auth_challenged = False
        self._reauthenticating = False
        self._out.clear()
        self._out.append(data)
        for packet_id in discarded:
            self._events.append(PublishDiscarded(packet_id, "a clean start discards the session"))

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
    ) -> int | None:
        """Publish an application message; return its packet id (None for QoS 0).

        QoS 1/2 messages beyond the server's Receive Maximum wait in a queue
        and go out, in order, as acknowledgements arrive. They may also be
        published while the connection is down if the session persists; they
        are sent when it resumes. Completion is reported by
        :class:`~mqttproto.events.PublishAcknowledged`.

        :raises LocalProtocolError: the message breaks a rule or a limit the
            server announced (Maximum QoS, Retain Available, Maximum Packet
            Size), the queue is full, or the client is not connected.
        """
        qos_ = _QOS.get(qos)
        if qos_ is None:
            raise LocalProtocolError(f"QoS must be 0, 1 or 2, not {qos!r}")
        qos = qos_
        if isinstance(payload, str):
            payload = payload.encode()
        state = self.state
        if state is not _S.CONNECTED and not (
            qos and (state is _S.CONNECTING or self._session_may_persist)
        ):
            raise LocalProtocolError(
                f"publish() at QoS {int(qos)} while {state.value}"
                + ("" if qos else ": QoS 0 messages are only sent while connected")
            )
        limits = self._limits
        if state is _S.CONNECTED:
            if qos > limits.maximum_qos:
                raise LocalProtocolError(
                    f"QoS {int(qos)} exceeds the server's Maximum QoS {int(limits.maximum_qos)}"
                    " [MQTT-3.2.2-11]"
                )
            if retain and not limits.retain_available:
                raise LocalProtocolError(
                    "the server does not support retained messages [MQTT-3.2.2-14]"
                )
        outbound = self._outbound
        send_now = state is _S.CONNECTED and (not qos or outbound.has_room())
        if send_now:
            self._check_output_room()
        if qos and not send_now:
            outbound.check_queue_room()
        packet_id = self._packet_ids.peek() if qos else None
        packet = PublishPacket(
            topic,
            payload,
            qos,
            retain,
            False,
            packet_id,
            payload_format_indicator=payload_format_indicator,
            message_expiry_interval=message_expiry_interval,
            response_topic=response_topic,
            correlation_data=correlation_data,
            user_properties=user_properties,
            content_type=content_type,
        )
        data = self._encode(packet)
        if send_now:
            self._out.append(self._aliased(packet, data))
        if qos:
            self._packet_ids.allocate()
            if send_now:
                outbound.start(packet)
            else:
                outbound.enqueue(packet)
        return packet_id

    def subscribe(
        self,
        subscriptions: Sequence[Subscription | str] | Subscription | str,
        *,
        subscription_identifier: int | None = None,
        user_properties: Iterable[tuple[str, str]] = (),
    ) -> int:
        """Subscribe; a filter string means a QoS 0 subscription. Returns the packet id.

        :raises LocalProtocolError: not connected, an invalid filter, or a
            feature the server said it lacks (wildcards, shared
            subscriptions, subscription identifiers).
        """
        if self.state is not _S.CONNECTED:
            raise LocalProtocolError(f"subscribe() while {self.state.value}")
        if isinstance(subscriptions, (str, Subscription)):
            subscriptions = [subscriptions]
        subs = tuple(Subscription(s) if isinstance(s, str) else s for s in subscriptions)
        limits = self._limits
        for sub in subs:
            topic_filter = sub.topic_filter
            if not isinstance(topic_filter, str):
                raise LocalProtocolError("a topic filter must be a str")
            if is_shared_filter(topic_filter):
                if not limits.shared_subscription_available:
                    raise LocalProtocolError("the server does not support shared subscriptions")
            elif not limits.wildcard_subscription_available and (
                "+" in topic_filter or "#" in topic_filter
            ):
                raise LocalProtocolError("the server does not support wildcard subscriptions")
        if subscription_identifier is not None and not limits.subscription_identifiers_available:
            raise LocalProtocolError("the server does not support subscription identifiers")
        self._check_output_room()
        packet_id = self._packet_ids.peek()
        packet = SubscribePacket(
            packet_id,
            subs,
            subscription_identifier=subscription_identifier,
            user_properties=user_properties,
        )
        self._out.append(self._encode(packet))
        self._packet_ids.allocate()
        self._pending_subscribes[packet_id] = len(subs)
        return packet_id

    def unsubscribe(
        self,
        filters: Sequence[str] | str,
        *,
        user_properties: Iterable[tuple[str, str]] = (),
    ) -> int:
        """Unsubscribe from one or more filters; return the packet id."""
        if self.state is not _S.CONNECTED:
            raise LocalProtocolError(f"unsubscribe() while {self.state.value}")
        if isinstance(filters, str):
            filters = [filters]
        self._check_output_room()
        packet_id = self._packet_ids.peek()
        packet = UnsubscribePacket(packet_id, tuple(filters), user_properties=user_properties)
        self._out.append(self._encode(packet))
        self._packet_ids.allocate()
        self._pending_unsubscribes[packet_id] = len(packet.topic_filters)
        return packet_id

    def acknowledge(
        self,
        packet_id: int,
        reason_code: ReasonCode = ReasonCode.SUCCESS,
        *,
        reason_string: str | None = None,
        user_properties: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Acknowledge a received QoS 1/2 message (manual acknowledgement).

        Sends PUBACK (QoS 1) or PUBREC (QoS 2). In MQTT 5 a failure
        ``reason_code`` refuses the message; a refused QoS 2 flow ends there.
        When the connection is down, the acknowledgement is recorded: a QoS 2
        message is then answered when the server resends it.
        """
        qos = self._inbound.unacked.get(packet_id)
        if qos is None:
            raise LocalProtocolError(
                f"no received message with packet id {packet_id} awaits an ack"
            )
        cls = PubAckPacket if qos == QoS.AT_LEAST_ONCE else PubRecPacket
        ack = cls(
            packet_id, reason_code, reason_string=reason_string, user_properties=user_properties
        )
        data = self._encode(ack)
        self._inbound.acknowledge(packet_id, reason_code)
        if self.state is _S.CONNECTED:
            self._out.append(data)

    def disconnect(
        self,
        reason_code: ReasonCode = ReasonCode.NORMAL_DISCONNECTION,
        *,
        session_expiry_interval: int | None = None,
        reason_string: str | None = None,
        user_properties: Iterable[tuple[str, str]] = (),
    ) -> None:
        """End the connection with DISCONNECT; flush ``data_to_send`` and close.

        ``reason_code`` 0x04 asks the server to publish the will anyway
        (MQTT 5). The session, if it persists, is kept for the next
        :meth:`connect`.
        """
        if self.state not in (_S.CONNECTING, _S.CONNECTED):
            raise LocalProtocolError(f"disconnect() while {self.state.value}")
        assert self._connect is not None
        if session_expiry_interval and not self._connect.session_expiry_interval:
            raise LocalProtocolError(
                "a session expiry interval set to 0 in CONNECT cannot be raised in DISCONNECT"
                " [MQTT-3.14.2-2]"
            )
        packet = DisconnectPacket(
            reason_code,
            session_expiry_interval=session_expiry_interval,
            reason_string=reason_string,
            user_properties=user_properties,
        )
        self._out.append(self._encode(packet))
        self._move(Input.SEND_DISCONNECT)
        if session_expiry_interval is not None:
            self._session_may_persist = session_expiry_interval > 0
        self._end_connection()
        self._events.append(Disconnected(packet.reason_code, reason_string=reason_string))

    def auth(
        self,
        authentication_data: bytes | None = None,
        *,
        reason_string: str | None = None,
        user_properties: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Send AUTH (MQTT 5 enhanced authentication [MQTT-4.12]).

        Answers the server's challenge (:class:`~mqttproto.events.AuthChallenged`)
        with reason 0x18; while connected and not challenged, starts a
        re-authentication with reason 0x19, using the CONNECT's method.
        """
        if self._version != _V5:
            raise LocalProtocolError("AUTH exists in MQTT 5 only")
        method = self._connect.authentication_method if self._connect else None
        if method is None:
            raise LocalProtocolError("auth() needs an authentication_method given to connect()")
        if self._auth_challenged:
            code = ReasonCode.CONTINUE_AUTHENTICATION
        elif self.state is _S.CONNECTED:
            code = ReasonCode.RE_AUTHENTICATE
        else:
            raise LocalProtocolError(f"auth() while {self.state.value} and not challenged")
        packet = AuthPacket(
            code,
            authentication_method=method,
            authentication_data=authentication_data,
            reason_string=reason_string,
            user_properties=user_properties,
        )
        self._out.append(self._encode(packet))
        self._move(Input.SEND_AUTH)
        self._auth_challenged = False
        if self.state is _S.CONNECTED:
            self._reauthenticating = True

    def _check_output_room(self) -> None:
        if len(self._out) >= self.config.max_unsent_packets:
            raise LocalProtocolError(
                f"{len(self._out)} packets are waiting for data_to_send(); write them first"
            )

    # -- time -----------------------------------------------------------------

    def data_to_send(self, now: float) -> bytes:
        """The bytes to write to the transport, all of them, in order, and
        forget them; ``b""`` if there are none.

        ``now`` is when they go out: the keep-alive counts from the last
        bytes sent, and the connect timeout from when CONNECT went out. Call
        it after every other call (any of them may queue bytes). After
        :class:`~mqttproto.events.Disconnected`, write what it returns, then
        close the transport.
        """
        data = super().data_to_send(now)
        if data and self.state is _S.CONNECTING and self._connect_sent_at is None:
            self._connect_sent_at = now
        return data

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must be called next, on the clock of the
        ``now`` arguments; None: no timer (before CONNECT goes out, after the
        connection closed, or keep-alive 0).

        While connecting, the connect timeout from when CONNECT was sent; once
        connected, when PINGREQ is due (the keep-alive after the last bytes
        sent [MQTT-3.1.2-23]) or, with a PINGREQ outstanding, when the wait for
        the server gives up (``ping_timeout``). It changes after every call
        that sends or receives: ask again each time round the loop.
        """
        state = self.state
        if state is _S.CONNECTED:
            if self._ping_sent_at is not None:
                return ping_response_deadline(
                    self._ping_sent_at, self._keep_alive, self.config.ping_timeout
                )
            return ping_due(self._last_sent, self._keep_alive)
        if state is _S.CONNECTING and self._connect_sent_at is not None:
            timeout = self.config.connect_timeout
            return None if timeout is None else self._connect_sent_at + timeout
        return None

    def handle_timer(self, now: float) -> None:
        """Act on the clock at ``now``: send PINGREQ when it is due, or end
        the connection when the server stayed silent past the ping timeout
        (:class:`~mqttproto.events.Disconnected` 0x8D *Keep alive timeout*)
        or did not answer CONNECT in time
        (:class:`~mqttproto.events.Disconnected` 0x80). Calling it early, or
        when there is no timer, does nothing; it never raises.
        """
        state = self.state
        if state is _S.CONNECTING:
            deadline = self.get_timer()
            if deadline is not None and now >= deadline:
                self._time_out(
                    "no CONNACK within the connect timeout", ReasonCode.UNSPECIFIED_ERROR
                )
            return
        if state is not _S.CONNECTED or self._keep_alive <= 0:
            return
        if self._ping_sent_at is not None:
            if self._last_received >= self._ping_sent_at:
                # Anything heard since PINGREQ proves the server is there.
                self._ping_sent_at = None
            else:
                deadline = ping_response_deadline(
                    self._ping_sent_at, self._keep_alive, self.config.ping_timeout
                )
                assert deadline is not None
                if now >= deadline:
                    self._time_out("no PINGRESP from the server", ReasonCode.KEEP_ALIVE_TIMEOUT)
                return
        due = ping_due(self._last_sent, self._keep_alive)
        if due is not None and now >= due:
            self._out.append(_PINGREQ)
            self._ping_sent_at = now

    def _time_out(self, why: str, reason_code: ReasonCode) -> None:
        self._move(Input.TIMEOUT)
        self._end_connection()
        self._events.append(Disconnected(reason_code, reason_string=why))

    # -- the session ----------------------------------------------------------

    def _discard_session(self) -> list[int]:
        """Forget the session state; return the ids of outgoing messages lost."""
        discarded = self._outbound.discard()
        self._inbound.discard()
        self._packet_ids.clear()
        return discarded

    def _end_connection(self) -> None:
        """Forget what belongs to one network connection only."""
        for packet_id in self._pending_subscribes:
            self._packet_ids.release(packet_id)
        for packet_id in self._pending_unsubscribes:
            self._packet_ids.release(packet_id)
        self._pending_subscribes.clear()
        self._pending_unsubscribes.clear()
        self._ping_sent_at = None
        self._auth_challenged = False
        self._reauthenticating = False

    def _connection_ended(self, reason_code: ReasonCode, now: float) -> None:
        self._end_connection()
        self._events.append(Disconnected(reason_code))

    def _reader_error(self, exc: RemoteProtocolError) -> RemoteProtocolError:
        if isinstance(exc, ConnectRefusal):
            # A CONNECT the reader could not accept: from a server that is a
            # protocol error, whatever is wrong inside it (0x84 and 0x85 are
            # CONNACK codes, which a client's DISCONNECT cannot carry).
            return RemoteProtocolError(f"the server sent a CONNECT packet ({exc})")
        return exc

    def _goodbye(self, exc: RemoteProtocolError) -> Packet | None:
        if self._version == _V5 and self.state in (_S.CONNECTING, _S.CONNECTED):
            return DisconnectPacket(exc.reason_code, reason_string=str(exc)[:200])
        return None

    # -- packet handlers ------------------------------------------------------

    def _on_connack(self, packet: Packet, now: float) -> None:
        assert isinstance(packet, ConnAckPacket)
        if packet.reason_code >= 0x80:
            self._move(Input.RECV_CONNACK_REFUSED)
            self._end_connection()
            self._events.append(
                ConnectionRefused(
                    packet.reason_code,
                    reason_string=packet.reason_string,
                    server_reference=packet.server_reference,
                    user_properties=packet.user_properties,
                )
            )
            return
        connect = self._connect
        assert connect is not None
        has_state = bool(len(self._outbound) or self._inbound.in_use())
        if packet.session_present and connect.clean_start:
            # [MQTT-3.2.2-4] (5.0): a client without session state closes.
            raise RemoteProtocolError("session present in answer to a clean start")
        if self._auth_challenged or (
            packet.authentication_method is not None
            and packet.authentication_method != connect.authentication_method
        ):
            raise RemoteProtocolError("CONNACK does not match the authentication exchange")
        self._move(Input.RECV_CONNACK)
        limits = self._limits = ServerLimits(
            receive_maximum=packet.receive_maximum or 65535,
            maximum_qos=QoS.EXACTLY_ONCE if packet.maximum_qos is None else packet.maximum_qos,
            retain_available=packet.retain_available is not False,
            maximum_packet_size=packet.maximum_packet_size,
            topic_alias_maximum=packet.topic_alias_maximum or 0,
            wildcard_subscription_available=packet.wildcard_subscription_available is not False,
            subscription_identifiers_available=packet.subscription_identifiers_available
            is not False,
            shared_subscription_available=packet.shared_subscription_available is not False,
        )
        self._peer_max_packet_size = limits.maximum_packet_size
        self._acks_fit = limits.maximum_packet_size is None or limits.maximum_packet_size >= 4
        if packet.server_keep_alive is not None:
            self._keep_alive = packet.server_keep_alive
        if packet.assigned_client_identifier is not None:
            self.client_id = packet.assigned_client_identifier
        expiry = (
            packet.session_expiry_interval
            if packet.session_expiry_interval is not None
            else connect.session_expiry_interval
        )
        self._session_may_persist = (
            bool(expiry) if self._version == _V5 else not connect.clean_start
        )
        self._has_connected = True
        self._events.append(
            ConnectionAccepted(
                packet.session_present,
                assigned_client_identifier=packet.assigned_client_identifier,
                keep_alive=self._keep_alive,
                receive_maximum=limits.receive_maximum,
                maximum_qos=limits.maximum_qos,
                retain_available=limits.retain_available,
                maximum_packet_size=limits.maximum_packet_size,
                topic_alias_maximum=limits.topic_alias_maximum,
                wildcard_subscription_available=limits.wildcard_subscription_available,
                subscription_identifiers_available=limits.subscription_identifiers_available,
                shared_subscription_available=limits.shared_subscription_available,
                session_expiry_interval=packet.session_expiry_interval,
                response_information=packet.response_information,
                server_reference=packet.server_reference,
                reason_string=packet.reason_string,
                user_properties=packet.user_properties,
                authentication_method=packet.authentication_method,
                authentication_data=packet.authentication_data,
            )
        )
        outbound = self._outbound
        outbound.send_quota = limits.receive_maximum
        # MQTT 3.1 has no session present flag: a 3.1 server resumes a
        # session that was not clean, so the client resends.
        resumed = packet.session_present or self._version == ProtocolVersion.MQTT_3_1
        if has_state and not resumed and not connect.clean_start:
            # The server has no session: ours must go too, messages still
            # queued included: they are part of the session state [MQTT-3.2.2-5].
            for packet_id in self._discard_session():
                self._events.append(
                    PublishDiscarded(packet_id, "the server did not resume the session")
                )
            return
        for resend in outbound.resend():
            # Resent in full: topic aliases do not outlive a connection.
            try:
                self._out.append(self._encode(resend))
            except LocalProtocolError as exc:
                # Too big for the server's new Maximum Packet Size.
                assert resend.packet_id is not None
                del outbound.inflight[resend.packet_id]
                self._packet_ids.release(resend.packet_id)
                self._events.append(PublishDiscarded(resend.packet_id, str(exc)))
        self._drop_queued_over_limits()
        if outbound.queue:
            self._send_released(outbound.release_queued())

    def _on_suback(self, packet: Packet, now: float) -> None:
        assert isinstance(packet, SubAckPacket)
        count = self._pending_subscribes.pop(packet.packet_id, None)
        if count is None:
            raise RemoteProtocolError(
                f"SUBACK for packet {packet.packet_id}, which is not a pending SUBSCRIBE"
            )
        self._packet_ids.release(packet.packet_id)
        if len(packet.reason_codes) != count:
            # [MQTT-3.8.4-6]: one return code per topic filter.
            raise RemoteProtocolError(
                f"SUBACK carries {len(packet.reason_codes)} codes for {count} filters [MQTT-3.9.3-1]"
            )
        self._events.append(
            SubscribeAcknowledged(
                packet.packet_id, packet.reason_codes, packet.reason_string, packet.user_properties
            )
        )

    def _on_unsuback(self, packet: Packet, now: float) -> None:
        assert isinstance(packet, UnsubAckPacket)
        count = self._pending_unsubscribes.pop(packet.packet_id, None)
        if count is None:
            raise RemoteProtocolError(
                f"UNSUBACK for packet {packet.packet_id}, which is not a pending UNSUBSCRIBE"
            )
        self._packet_ids.release(packet.packet_id)
        if self._version == _V5 and len(packet.reason_codes) != count:
            raise RemoteProtocolError(
                f"UNSUBACK carries {len(packet.reason_codes)} codes for {count} filters [MQTT-3.11.3-1]"
            )
        self._events.append(
            UnsubscribeAcknowledged(
                packet.packet_id, packet.reason_codes, packet.reason_string, packet.user_properties
            )
        )

    def _on_pingresp(self, packet: Packet, now: float) -> None:
        self._ping_sent_at = None

    def _on_disconnect(self, packet: Packet, now: float) -> None:
        assert isinstance(packet, DisconnectPacket)
        if self._version != _V5:
            raise RemoteProtocolError("a 3.1/3.1.1 server never sends DISCONNECT")
        self._move(Input.RECV_DISCONNECT)
        self._end_connection()
        self._events.append(
            Disconnected(
                packet.reason_code,
                by_server=True,
                server_reference=packet.server_reference,
                reason_string=packet.reason_string,
                session_expiry_interval=packet.session_expiry_interval,
                user_properties=packet.user_properties,
            )
        )

    def _on_auth(self, packet: Packet, now: float) -> None:
        assert isinstance(packet, AuthPacket)
        connect = self._connect
        assert connect is not None
        if connect.authentication_method is None:
            # [MQTT-4.12.0-6]: no method in CONNECT, no AUTH from the server.
            raise RemoteProtocolError("AUTH from a server when no authentication method was used")
        if packet.authentication_method != connect.authentication_method:
            raise RemoteProtocolError("AUTH with a different authentication method [MQTT-4.12.0-5]")
        code = packet.reason_code
        if code == ReasonCode.CONTINUE_AUTHENTICATION:
            self._move(Input.RECV_AUTH)
            self._auth_challenged = True
            self._events.append(
                AuthChallenged(
                    packet.authentication_method,
                    packet.authentication_data,
                    code,
                    packet.reason_string,
                    packet.user_properties,
                )
            )
        elif code == ReasonCode.SUCCESS and self.state is _S.CONNECTED and self._reauthenticating:
            self._move(Input.RECV_AUTH)
            self._reauthenticating = False
            self._events.append(
                Reauthenticated(
                    packet.authentication_method,
                    packet.authentication_data,
                    packet.reason_string,
                    packet.user_properties,
                )
            )
        else:
            raise RemoteProtocolError(f"unexpected AUTH with reason {code.name}")
