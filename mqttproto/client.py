"""The client role: :class:`ClientConnection`.

A :class:`ClientConnection` is driven by whatever does the I/O: it is given
bytes received and the current time, and hands back events and bytes to send.
One object lives as long as the client's session, across network
connections: after a connection ends, :meth:`ClientConnection.connect` starts
the next one, and with ``clean_start=False`` the QoS 1/2 state carries over
and is resent [MQTT-4.4.0-1].

The class is put together from mixins, one module each: this one keeps the
state, ``connect``, ``publish``, the events and the timers;
:mod:`._client_commands` the other commands; :mod:`._client_input` what the
server sends besides the QoS flows, which are in :mod:`._client_flows`.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator
from typing import ClassVar

from ._client_commands import ClientCommands
from ._client_flows import MessageFlows, ServerLimits
from ._client_input import RECEIVABLE, ClientInput
from ._connection import Connection
from ._keepalive import ping_due, ping_response_deadline
from ._qos import InboundFlow, OutboundFlow, PacketIdAllocator
from ._state import TRANSITIONS, ConnectionState, Input
from .codec import PacketReader, encode_packet
from .config import MAX_PACKET_SIZE, ClientConfig
from .enums import PacketType, ProtocolVersion, QoS, ReasonCode
from .errors import ConnectRefusal, LocalProtocolError, RemoteProtocolError
from .events import (
    Disconnected,
    Event,
    PublishDiscarded,
)
from .packets import (
    ConnectPacket,
    DisconnectPacket,
    Packet,
    PingReqPacket,
    PublishPacket,
    Will,
)

__all__ = ["ClientConnection"]

_S = ConnectionState
_P = PacketType
_V5 = ProtocolVersion.MQTT_5_0
#: PINGREQ is the same two bytes in every version.
_PINGREQ = encode_packet(PingReqPacket(), version=ProtocolVersion.MQTT_3_1_1)
_QOS: dict[int, QoS] = {int(q): q for q in QoS}


class ClientConnection(ClientCommands, ClientInput, MessageFlows, Connection):
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

    RECEIVABLE = RECEIVABLE
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
        self._out: list[bytes] = []
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
        bridge: bool = False,
    ) -> None:
        """Start a network connection: queue CONNECT.

        Allowed before the first connection and after one ended. With
        ``clean_start=False`` the session of the previous connection resumes
        if the server still has it (``session_present`` in
        :class:`~mqttproto.events.ConnectionAccepted`).

        In MQTT 3.1/3.1.1 the MQTT 5 arguments must be left out; the limits
        from the config are still enforced locally. ``bridge`` (3.1/3.1.1)
        marks the connection as a mosquitto bridge's (see
        :class:`~mqttproto.packets.ConnectPacket`).
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
            bridge=bridge,
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
        self._aliases_in = None
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
