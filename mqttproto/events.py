"""Events: what a connection tells the application, in past tense.

Every event is a frozen attrs class. Failures the peer reports (a reason code
of 0x80 or more in an acknowledgement) are events carrying ``reason_code``,
not exceptions: only a broken protocol raises.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from .enums import ProtocolVersion, QoS, ReasonCode
from .packets import PublishPacket, Subscription, UserProperties, Will

__all__ = [
    "AuthChallenged",
    "AuthReceived",
    "ConnectRequested",
    "ConnectionAccepted",
    "ConnectionRefused",
    "Disconnected",
    "Event",
    "MessageReceived",
    "PublishAcknowledged",
    "PublishDiscarded",
    "Reauthenticated",
    "SubscribeAcknowledged",
    "SubscribeRequested",
    "UnsubscribeAcknowledged",
    "UnsubscribeRequested",
]


class Event:
    """Base class of every event."""

    __slots__ = ()


@attrs.frozen
class ConnectionAccepted(Event):
    """The server accepted the connection (CONNACK with a success code).

    The limits are the ones in force for this connection: where the server
    left a property out, the protocol default is filled in.
    """

    session_present: bool
    #: The client identifier the server assigned, if the client sent none.
    assigned_client_identifier: str | None = None
    #: The keep-alive in force: the Server Keep Alive if the server set one.
    keep_alive: int = 0
    receive_maximum: int = 65535
    maximum_qos: QoS = QoS.EXACTLY_ONCE
    retain_available: bool = True
    maximum_packet_size: int | None = None
    topic_alias_maximum: int = 0
    wildcard_subscription_available: bool = True
    subscription_identifiers_available: bool = True
    shared_subscription_available: bool = True
    session_expiry_interval: int | None = None
    response_information: str | None = None
    server_reference: str | None = None
    reason_string: str | None = None
    user_properties: UserProperties = ()
    authentication_method: str | None = None
    authentication_data: bytes | None = None


@attrs.frozen
class ConnectionRefused(Event):
    """The server refused the connection; it is now closed.

    ``reason_code`` is the MQTT 5 code; a 3.1/3.1.1 return code is mapped to
    its MQTT 5 equivalent (:meth:`ReasonCode.from_connack_return_code`).
    """

    reason_code: ReasonCode
    reason_string: str | None = None
    server_reference: str | None = None
    user_properties: UserProperties = ()


@attrs.frozen(slots=True)
class MessageReceived(Event):
    """An application message arrived.

    The attributes read through to the PUBLISH packet: ``topic`` (with any
    topic alias already resolved), ``payload``, ``qos``, ``retain``,
    ``duplicate``, ``packet_id`` and the MQTT 5 properties under their
    specification names. With automatic acknowledgement the PUBACK/PUBREC is
    already queued; with manual acknowledgement call ``acknowledge(packet_id)``.
    """

    packet: PublishPacket

    @property
    def topic(self) -> str:
        return self.packet.topic

    @property
    def payload(self) -> bytes:
        return self.packet.payload

    @property
    def qos(self) -> QoS:
        return self.packet.qos

    @property
    def retain(self) -> bool:
        return self.packet.retain

    @property
    def duplicate(self) -> bool:
        return self.packet.duplicate

    @property
    def packet_id(self) -> int | None:
        return self.packet.packet_id

    @property
    def payload_format_indicator(self) -> int | None:
        return self.packet.payload_format_indicator

    @property
    def message_expiry_interval(self) -> int | None:
        return self.packet.message_expiry_interval

    @property
    def topic_alias(self) -> int | None:
        return self.packet.topic_alias

    @property
    def response_topic(self) -> str | None:
        return self.packet.response_topic

    @property
    def correlation_data(self) -> bytes | None:
        return self.packet.correlation_data

    @property
    def user_properties(self) -> UserProperties:
        return self.packet.user_properties

    @property
    def subscription_identifiers(self) -> tuple[int, ...]:
        return self.packet.subscription_identifiers

    @property
    def content_type(self) -> str | None:
        return self.packet.content_type


def _message_received_factory() -> Callable[[PublishPacket], MessageReceived]:
    """A constructor for the hot path: no attrs ``__init__``, same object."""
    new = object.__new__
    set_packet = MessageReceived.__dict__["packet"].__set__

    def message_received(packet: PublishPacket) -> MessageReceived:
        event = new(MessageReceived)
        set_packet(event, packet)
        return event

    return message_received


#: ``message_received(packet)`` builds a :class:`MessageReceived` at half the
#: cost of the attrs constructor (the client makes one per message).
message_received = _message_received_factory()


@attrs.frozen
class PublishAcknowledged(Event):
    """A QoS 1 PUBLISH got its PUBACK, or a QoS 2 PUBLISH its PUBCOMP.

    A PUBREC with a failure code also ends a QoS 2 flow and is reported here
    with that code. ``reason_code`` 0x10 (*No matching subscribers*) is a
    success.
    """

    packet_id: int
    reason_code: ReasonCode = ReasonCode.SUCCESS
    reason_string: str | None = None
    user_properties: UserProperties = ()


def _publish_acknowledged_factory() -> Callable[
    [int, ReasonCode, str | None, UserProperties], PublishAcknowledged
]:
    new = object.__new__
    slots = PublishAcknowledged.__dict__
    set_id = slots["packet_id"].__set__
    set_code = slots["reason_code"].__set__
    set_string = slots["reason_string"].__set__
    set_properties = slots["user_properties"].__set__

    def publish_acknowledged(
        packet_id: int,
        reason_code: ReasonCode,
        reason_string: str | None,
        user_properties: UserProperties,
    ) -> PublishAcknowledged:
        event = new(PublishAcknowledged)
        set_id(event, packet_id)
        set_code(event, reason_code)
        set_string(event, reason_string)
        set_properties(event, user_properties)
        return event

    return publish_acknowledged


#: ``publish_acknowledged(packet_id, reason_code, reason_string,
#: user_properties)``: the hot-path constructor of :class:`PublishAcknowledged`,
#: taking values already validated by the decoder.
publish_acknowledged = _publish_acknowledged_factory()


@attrs.frozen
class PublishDiscarded(Event):
    """A QoS 1/2 message this side published will never be acknowledged.

    This happens when the server answers a resumed connection with
    ``session_present=0`` (the client must then discard its session state
    [MQTT-3.2.2-5]), or when a message queued while offline exceeds a limit
    the server announced on reconnect (its Maximum QoS or Retain Available).
    """

    packet_id: int
    reason: str


@attrs.frozen
class SubscribeAcknowledged(Event):
    """SUBACK: one reason code per requested filter, in order."""

    packet_id: int
    reason_codes: tuple[ReasonCode, ...]
    reason_string: str | None = None
    user_properties: UserProperties = ()


@attrs.frozen
class UnsubscribeAcknowledged(Event):
    """UNSUBACK; ``reason_codes`` is empty in 3.1/3.1.1, which have none."""

    packet_id: int
    reason_codes: tuple[ReasonCode, ...] = ()
    reason_string: str | None = None
    user_properties: UserProperties = ()


@attrs.frozen
class AuthChallenged(Event):
    """The server continues an enhanced authentication exchange (AUTH 0x18).

    Answer with ``auth(authentication_data=...)``.
    """

    authentication_method: str | None
    authentication_data: bytes | None = None
    reason_code: ReasonCode = ReasonCode.CONTINUE_AUTHENTICATION
    reason_string: str | None = None
    user_properties: UserProperties = ()


@attrs.frozen
class Reauthenticated(Event):
    """A re-authentication succeeded (AUTH 0x00 while connected)."""

    authentication_method: str | None
    authentication_data: bytes | None = None
    reason_string: str | None = None
    user_properties: UserProperties = ()


@attrs.frozen
class Disconnected(Event):
    """The connection is over; close the transport after flushing ``data_to_send``.

    ``by_server`` is True, on a client, when the server sent DISCONNECT;
    ``by_client`` is True, on a server, when the client did. The other fields
    are then what the peer said (on a server, ``session_expiry_interval`` is
    the client's new Session Expiry Interval, if it sent one). Otherwise
    ``reason_code`` says why this side ended it: the code of its own
    DISCONNECT (or of the refusing CONNACK), the code of a protocol error it
    detected, 0x8D *Keep alive timeout*, 0xA0 *Maximum connect time* for a
    server's connect timeout, or 0x80 *Unspecified error* for a connection
    that ended without a word (the peer closed the stream).
    """

    reason_code: ReasonCode
    by_server: bool = False
    server_reference: str | None = None
    reason_string: str | None = None
    session_expiry_interval: int | None = None
    user_properties: UserProperties = ()
    by_client: bool = False


# -- what a server hears ---------------------------------------------------------------


@attrs.frozen
class ConnectRequested(Event):
    """A client sent CONNECT (server side): answer with ``accept()``,
    ``refuse()`` or, for enhanced authentication, ``auth()``.

    Until the answer, nothing else the client sends is processed but AUTH
    and DISCONNECT [MQTT-3.1.4-5]. ``client_id`` is as the client sent it;
    an empty one needs ``accept(assigned_client_identifier=...)`` in MQTT 5
    [MQTT-3.1.3-6]. The MQTT 5 properties are None (or empty) when absent.
    """

    client_id: str
    clean_start: bool
    keep_alive: int
    username: str | None
    # Kept out of repr so that logging the event does not log a secret.
    password: bytes | None = attrs.field(repr=False)
    will: Will | None
    version: ProtocolVersion
    session_expiry_interval: int | None = None
    receive_maximum: int | None = None
    maximum_packet_size: int | None = None
    topic_alias_maximum: int | None = None
    request_response_information: bool | None = None
    request_problem_information: bool | None = None
    user_properties: UserProperties = ()
    authentication_method: str | None = None
    authentication_data: bytes | None = attrs.field(default=None, repr=False)


@attrs.frozen
class SubscribeRequested(Event):
    """A client sent SUBSCRIBE: answer with ``suback(packet_id, reason_codes)``,
    one code per subscription, in order [MQTT-3.8.4-6]."""

    packet_id: int
    subscriptions: tuple[Subscription, ...]
    subscription_identifier: int | None = None
    user_properties: UserProperties = ()


@attrs.frozen
class UnsubscribeRequested(Event):
    """A client sent UNSUBSCRIBE: answer with ``unsuback(packet_id, reason_codes)``."""

    packet_id: int
    topic_filters: tuple[str, ...]
    user_properties: UserProperties = ()


@attrs.frozen
class AuthReceived(Event):
    """A client sent AUTH (MQTT 5 enhanced authentication, server side).

    During CONNECT (``reason_code`` 0x18 *Continue authentication*) it answers
    the server's challenge: go on with ``auth()``, or end with ``accept()``
    or ``refuse()``. Once connected, 0x19 *Re-authenticate* starts a
    re-authentication and 0x18 continues one: answer with ``auth()`` (0x18 to
    continue, 0x00 when it succeeded) or end the connection with
    ``disconnect()`` [MQTT-4.12.1-2].
    """

    reason_code: ReasonCode
    authentication_method: str
    authentication_data: bytes | None = attrs.field(default=None, repr=False)
    reason_string: str | None = None
    user_properties: UserProperties = ()
