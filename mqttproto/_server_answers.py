"""The application's answers on a server connection: :class:`ServerAnswers`,
a mixin of :class:`~mqttproto.server.ServerConnection`.

``accept`` and ``refuse`` answer a CONNECT (``accept`` sends again what a
resumed session had in flight), ``auth`` an AUTH (or starts a
re-authentication), ``suback`` and ``unsuback`` a SUBSCRIBE and an
UNSUBSCRIBE; ``disconnect`` and ``close`` end the connection. Each checks
first and changes nothing when it refuses (:class:`LocalProtocolError`).
The QoS answers (``acknowledge``, ``publish``) are in :mod:`._server_flows`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import attrs

from ._server_input import _APP, _CLIENT
from ._server_session import ServerSession
from ._state import ConnectionState, Input
from .config import ServerConfig
from .enums import ProtocolVersion, QoS, ReasonCode
from .errors import LocalProtocolError
from .events import Disconnected, Event, PublishDiscarded
from .packets import (
    AuthPacket,
    ConnAckPacket,
    ConnectPacket,
    DisconnectPacket,
    Packet,
    PublishPacket,
    SubAckPacket,
    UnsubAckPacket,
)

__all__ = ["ServerAnswers"]

_S = ConnectionState
_C = ReasonCode
_V5 = ProtocolVersion.MQTT_5_0
_QOS: dict[int, QoS] = {int(q): q for q in QoS}


class ServerAnswers:
    """The answering half of :class:`~mqttproto.server.ServerConnection`."""

    if not TYPE_CHECKING:
        # ServerConnection declares the slots; a mixin without __slots__
        # would give every connection a __dict__ and a weakref slot (40
        # bytes). Hidden from mypy, which would take the mixin's writes to
        # those slots for writes to names outside its own empty __slots__.
        __slots__ = ()

    config: ServerConfig
    state: ConnectionState
    client_id: str
    _version: ProtocolVersion | None
    _event_queue: list[Event] | None
    _connect: ConnectPacket | None
    _auth_turn: bool
    _reauth: bool
    _held: list[Packet] | None
    _incoming: list[Packet] | tuple[()]
    _incoming_pos: int
    _keep_alive: int
    _session: ServerSession | None
    _waiting_bytes: int
    _pending_subscribes: dict[int, int] | None
    _pending_unsubscribes: dict[int, int] | None

    if TYPE_CHECKING:

        def _add_event(self, event: Event) -> None: ...

        def _move(self, event: Input) -> None: ...

        def _write(self, data: bytes) -> None: ...

        def _encode(self, packet: Packet) -> bytes: ...

        def _close(self, event: Disconnected) -> None: ...

        def _waiting_connect(self, what: str) -> ConnectPacket: ...

        def _connected(self, what: str) -> None: ...

        def _send_released(self, packets: Iterable[PublishPacket]) -> None: ...

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
        self._session.send_quota = min(
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
            self._incoming = held + list(self._incoming[self._incoming_pos :])
            self._incoming_pos = 0
        self._held = None
        if connect.authentication_method is None:
            # Nothing else is read from the CONNECT (no re-authentication;
            # DISCONNECT reads _expiry_zero): an idle connection drops it.
            self._connect = None

    def _resend_session(self) -> None:
        """A resumed session: what was in flight goes again, in order, PUBLISH
        with DUP and PUBREL past PUBREC [MQTT-4.4.0-1]."""
        session = self._session
        assert session is not None  # accept() gave it
        if session._outbound is None:
            return  # nothing was ever in flight
        for packet in session.outbound.resend():
            if isinstance(packet, PublishPacket):
                if self._version != _V5:
                    packet = attrs.evolve(
                        packet,
                        subscription_identifiers=(),
                        payload_format_indicator=None,
                        message_expiry_interval=None,
                        response_topic=None,
                        correlation_data=None,
                        user_properties=(),
                        content_type=None,
                    )
                try:
                    # Topic aliases do not outlive a connection: sent in full.
                    self._write(self._encode(packet))
                except LocalProtocolError as exc:
                    assert packet.packet_id is not None
                    session.discard_inflight(packet.packet_id)
                    self._add_event(PublishDiscarded(packet.packet_id, str(exc)))
            else:
                with contextlib.suppress(LocalProtocolError):
                    self._write(self._encode(packet))
        if session.outbound.queue:
            self._send_released(session.outbound.release_queued())

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
        self._event_queue = None
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
            if not self._reauth or self._auth_turn is not _APP:
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
        # The client's turn: what it sends is read again.
        self._auth_turn = _CLIENT
        if self.state is _S.CONNECTING:
            self._waiting_bytes = 0
        elif code == _C.SUCCESS:
            self._reauth = False

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
        pending = self._pending_subscribes
        count = None if pending is None else pending.get(packet_id)
        if pending is None or count is None:
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
        del pending[packet_id]
        if not pending:
            self._pending_subscribes = None  # an idle connection keeps no table
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
        pending = self._pending_unsubscribes
        count = None if pending is None else pending.get(packet_id)
        if pending is None or count is None:
            raise LocalProtocolError(
                f"no UNSUBSCRIBE with packet id {packet_id} waits for UNSUBACK"
            )
        if self._version == _V5:
            codes = (
                [_C.SUCCESS] * count
                if reason_codes is None
                else [ReasonCode(c) for c in reason_codes]
            )
            if len(codes) != count:
                raise LocalProtocolError(f"UNSUBACK needs {count} reason codes, not {len(codes)}")
            ack = UnsubAckPacket(
                packet_id,
                codes,
                reason_string=reason_string,
                user_properties=tuple(user_properties),
            )
        else:
            ack = UnsubAckPacket(packet_id, ())
        data = self._encode(ack)
        del pending[packet_id]
        if not pending:
            self._pending_unsubscribes = None  # an idle connection keeps no table
        self._write(data)

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
        self._event_queue = None
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
        self._event_queue = None
        self._move(Input.TIMEOUT)
        self._close(Disconnected(ReasonCode(reason_code)))

    def _connack(
        self,
        connect: ConnectPacket,
        *,
        present: bool,
        assigned_client_identifier: str | None,
        session_expiry_interval: int | None,
        authentication_data: bytes | None,
        response_information: str | None,
        server_reference: str | None,
        reason_string: str | None,
        user_properties: tuple[tuple[str, str], ...],
    ) -> tuple[ConnAckPacket, int]:
        """The accepting CONNACK, and the keep-alive in force: the client's,
        clamped to the config's bounds, or ``server_keep_alive``."""
        config = self.config
        v5 = self._version == _V5
        requested = connect.keep_alive
        keep_alive = requested
        maximum = config.max_keep_alive  # 0: none
        if maximum and (keep_alive == 0 or keep_alive > maximum):
            keep_alive = maximum
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
                user_properties=user_properties,
                authentication_method=connect.authentication_method,
                authentication_data=authentication_data,
            )
        else:
            ack = ConnAckPacket(present, _C.SUCCESS)
        return ack, keep_alive
