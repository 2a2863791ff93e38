"""The exception hierarchy.

Two kinds of protocol error, so that callers can tell whose fault it was:

- :class:`LocalProtocolError`: the caller asked for something the protocol
  forbids (encode a PUBLISH with a wildcard topic, send a v5-only field on a
  3.1.1 connection). Nothing was changed; fix the call.
- :class:`RemoteProtocolError`: the peer sent bytes or packets that break the
  protocol. The connection must be closed, after sending the ``reason_code``
  where the protocol version has a way to say it.

Every :class:`ProtocolError` carries the MQTT 5 ``reason_code`` that names the
failure on the wire.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .enums import ProtocolVersion, ReasonCode

if TYPE_CHECKING:
    from .packets import Packet

__all__ = [
    "ClientIdentifierNotValid",
    "LocalProtocolError",
    "MQTTError",
    "MalformedPacket",
    "PacketTooLarge",
    "ProtocolError",
    "ReceiveMaximumExceeded",
    "RemoteProtocolError",
    "TopicAliasInvalid",
    "UnsupportedProtocolVersion",
]


class MQTTError(Exception):
    """Base class of every exception mqttproto raises."""


class ProtocolError(MQTTError):
    """A rule of the MQTT protocol was broken.

    :ivar reason_code: the MQTT 5 reason code that describes the failure.
    """

    default_reason_code: ReasonCode = ReasonCode.PROTOCOL_ERROR

    def __init__(self, message: str, reason_code: ReasonCode | None = None) -> None:
        super().__init__(message)
        self.reason_code: ReasonCode = (
            self.default_reason_code if reason_code is None else reason_code
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.reason_code))


class LocalProtocolError(ProtocolError):
    """The caller asked for something the protocol does not allow."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol; the connection must be closed.

    :ivar preceding_packets: set by :meth:`PacketReader.feed`: the packets
        that were complete before the faulty one in the same call (empty
        otherwise).
    """

    def __init__(self, message: str, reason_code: ReasonCode | None = None) -> None:
        super().__init__(message, reason_code)
        self.preceding_packets: list[Packet] = []


class MalformedPacket(RemoteProtocolError):
    """The bytes received do not form a valid packet (reason code 0x81)."""

    default_reason_code = ReasonCode.MALFORMED_PACKET


class PacketTooLarge(RemoteProtocolError):
    """A packet is larger than the receiver's maximum packet size (0x95)."""

    default_reason_code = ReasonCode.PACKET_TOO_LARGE


class ConnectRefusal(RemoteProtocolError):
    """A CONNECT that a server must answer with a refusing CONNACK, then close.

    The CONNACK carries :attr:`reason_code` (in 3.1/3.1.1 as the matching
    return code, see :meth:`ReasonCode.to_connack_return_code`) and is
    encoded in :attr:`protocol_version`.

    :ivar protocol_level: the level byte the CONNECT carried, if it was read.
    """

    def __init__(
        self,
        message: str,
        reason_code: ReasonCode | None = None,
        protocol_level: int | None = None,
    ) -> None:
        super().__init__(message, reason_code)
        self.protocol_level = protocol_level

    @property
    def protocol_version(self) -> ProtocolVersion | None:
        """The version to answer in, when the level is one mqttproto knows."""
        if self.protocol_level is None:
            return None
        try:
            return ProtocolVersion(self.protocol_level)
        except ValueError:
            return None

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.reason_code, self.protocol_level))


class UnsupportedProtocolVersion(ConnectRefusal):
    """CONNECT carried a protocol name or level this library does not speak (0x84).

    A server answers with CONNACK return code 1 (3.1/3.1.1) or reason code
    0x84 (5.0) and closes the connection [MQTT-3.1.2-2].
    """

    default_reason_code = ReasonCode.UNSUPPORTED_PROTOCOL_VERSION


class ClientIdentifierNotValid(ConnectRefusal):
    """CONNECT carried a client identifier the protocol version forbids (0x85).

    MQTT 3.1 allows 1 to 23 characters; 3.1.1 forbids an empty identifier
    together with a persistent session [MQTT-3.1.3-8]. A server answers with
    CONNACK return code 2 (identifier rejected) and closes the connection.
    """

    default_reason_code = ReasonCode.CLIENT_IDENTIFIER_NOT_VALID


class ReceiveMaximumExceeded(RemoteProtocolError):
    """The peer sent more unacknowledged QoS 1/2 PUBLISH than allowed (0x93)."""

    default_reason_code = ReasonCode.RECEIVE_MAXIMUM_EXCEEDED


class TopicAliasInvalid(RemoteProtocolError):
    """The peer used a topic alias that is zero, too large or unknown (0x94)."""

    default_reason_code = ReasonCode.TOPIC_ALIAS_INVALID
