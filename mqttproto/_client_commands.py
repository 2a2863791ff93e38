"""What an application asks of a client connection besides connecting and
publishing: :class:`ClientCommands`, a mixin of
:class:`~mqttproto.client.ClientConnection`.

``subscribe`` and ``unsubscribe``, ``acknowledge`` of a received QoS 1/2
message, ``disconnect`` and ``auth``. Each checks first and changes nothing
when it refuses (:class:`~mqttproto.errors.LocalProtocolError`).
``connect`` and ``publish`` stay in ``client.py``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from ._client_flows import ServerLimits
from ._qos import InboundFlow, PacketIdAllocator
from ._state import ConnectionState, Input
from .enums import ProtocolVersion, QoS, ReasonCode
from .errors import LocalProtocolError
from .events import Disconnected, Event
from .packets import (
    AuthPacket,
    ConnectPacket,
    DisconnectPacket,
    Packet,
    PubAckPacket,
    PubRecPacket,
    SubscribePacket,
    Subscription,
    UnsubscribePacket,
)
from .topics import is_shared_filter

__all__ = ["ClientCommands"]

_S = ConnectionState
_V5 = ProtocolVersion.MQTT_5_0


class ClientCommands:
    """The commands half of :class:`~mqttproto.client.ClientConnection`."""

    state: ConnectionState
    _version: ProtocolVersion
    _out: list[bytes]
    _events: deque[Event]
    _packet_ids: PacketIdAllocator
    _inbound: InboundFlow
    _limits: ServerLimits
    _connect: ConnectPacket | None
    _pending_subscribes: dict[int, int]
    _pending_unsubscribes: dict[int, int]
    _session_may_persist: bool
    _auth_challenged: bool
    _reauthenticating: bool

    if TYPE_CHECKING:

        def _encode(self, packet: Packet) -> bytes: ...

        def _move(self, event: Input) -> None: ...

        def _check_output_room(self) -> None: ...

        def _end_connection(self) -> None: ...

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
