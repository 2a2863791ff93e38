"""Pure-Python encoders of a server's hot paths, which build no packet per send:
:func:`encode_ack` (a PUBACK, PUBREC, PUBREL or PUBCOMP from its fields),
:func:`encode_publish_split` and :class:`PreparedPublish` (a PUBLISH encoded
once, each receiver's packet identifier spliced in). Each gives exactly what
:func:`._encode.encode_packet` gives, or raises what it raises.
"""

from __future__ import annotations

from typing import Any, Final, NoReturn

from ._codec_common import (
    _PUBACK_CODES,
    _PUBREL_CODES,
    _V5,
    _VERSIONS,
    _build,
    _new,
    _u16,
)
from ._encode import _check_packet_id, _check_reason, _encode_publish
from .enums import PacketType, ProtocolVersion, QoS, ReasonCode
from .errors import LocalProtocolError
from .packets import PublishPacket

__all__ = ["PreparedPublish", "encode_ack", "encode_publish_split", "prepare_publish"]


#: The first byte of each acknowledgement, and the reason codes it may carry.
_ACKS: Final[dict[int, tuple[int, frozenset[ReasonCode], str]]] = {
    PacketType.PUBACK: (0x40, _PUBACK_CODES, "PUBACK"),
    PacketType.PUBREC: (0x50, _PUBACK_CODES, "PUBREC"),
    PacketType.PUBREL: (0x62, _PUBREL_CODES, "PUBREL"),
    PacketType.PUBCOMP: (0x70, _PUBREL_CODES, "PUBCOMP"),
}


def encode_ack(
    packet_type: PacketType,
    packet_id: int,
    reason_code: ReasonCode | int = 0,
    *,
    version: ProtocolVersion,
) -> bytes:
    """A PUBACK, PUBREC, PUBREL or PUBCOMP without properties: what
    ``encode_packet`` makes of such a packet, without building it.

    The checks are ``encode_packet``'s, in its order (the version, then the
    packet identifier, then the reason code), so that for every argument this
    returns the bytes of ``encode_packet(cls(packet_id, reason_code),
    version=version)`` or raises what that raises.

    :raises LocalProtocolError: an invalid packet identifier, a reason code
        the packet cannot carry, or one other than success before MQTT 5.
    :raises ValueError: ``packet_type`` is not one of the four, or
        ``version`` is not a protocol version.
    """
    spec = _ACKS.get(packet_type)
    if spec is None:
        raise ValueError(f"not a publish acknowledgement: {packet_type!r}")
    first, allowed, name = spec
    if version not in _VERSIONS:
        raise ValueError(f"unknown protocol version {version!r}")
    if type(packet_id) is not int or not 0 < packet_id <= 0xFFFF:
        _check_packet_id(packet_id)  # [MQTT-2.2.1-3]
    if version != _V5:
        # Before 5.0 an acknowledgement is the packet identifier alone; the
        # comparison is _encode_ack's, so whatever equals SUCCESS passes.
        if reason_code != ReasonCode.SUCCESS:
            raise LocalProtocolError(f"{name} reason codes exist in MQTT 5 only")
        return bytes((first, 2, packet_id >> 8, packet_id & 0xFF))
    code = _check_reason(reason_code, allowed, name)
    if not code:
        # Success may be left out when there are no properties (section 3.4.2.1).
        return bytes((first, 2, packet_id >> 8, packet_id & 0xFF))
    return bytes((first, 3, packet_id >> 8, packet_id & 0xFF, code))


def encode_publish_split(packet: PublishPacket, *, version: ProtocolVersion) -> tuple[bytes, bytes]:
    """A PUBLISH encoded once, to be sent with many packet identifiers.

    Returns ``(head, tail)`` such that ``head + id + tail``, where ``id`` is a
    packet identifier as two bytes, is what :func:`encode_packet` makes of
    the packet with that identifier (the packet's own ``packet_id`` is
    ignored). A QoS 0 PUBLISH has no identifier: ``head`` is all of it and
    ``tail`` is empty. Validated as :func:`encode_packet` validates.

    :raises LocalProtocolError: as :func:`encode_packet` (a QoS 0 PUBLISH
        with a packet identifier included).
    :raises TypeError: ``packet`` is not a :class:`PublishPacket`.
    :raises ValueError: ``version`` is not a protocol version.
    """
    if type(packet) is not PublishPacket:
        raise TypeError(f"not a PUBLISH packet: {packet!r}")
    if version not in _VERSIONS:
        raise ValueError(f"unknown protocol version {version!r}")
    if packet.qos == 0:  # the test _encode_publish makes
        # Nothing to splice in; a packet identifier is refused [MQTT-2.2.1-2].
        return _encode_publish(packet, version), b""
    packet_id = packet.packet_id
    if type(packet_id) is not int or not 0 < packet_id <= 0xFFFF:
        # Any valid identifier gives the same head and tail. The copy keeps the
        # other field values as they are (attrs.evolve would run converters),
        # so that a bad one is refused as encode_packet refuses it.
        copy = _new(PublishPacket)
        copy.__dict__.update(vars(packet))
        copy.__dict__["packet_id"] = 1
        packet = copy
    data = _encode_publish(packet, version)
    # The packet identifier follows the fixed header and the topic name.
    pos = 1
    while data[pos] & 0x80:
        pos += 1
    pos += 1
    at = pos + 2 + ((data[pos] << 8) | data[pos + 1])
    return data[:at], data[at + 2 :]


class _PreparedSlots:
    """The attributes of :class:`PreparedPublish` (the compiled twin writes
    them by their offsets)."""

    __slots__ = ("_aliased", "head", "packet", "qos", "size", "tail", "v5", "version")


class PreparedPublish(_PreparedSlots):
    """A PUBLISH encoded once for one protocol version, to be sent to many
    clients, each with its own packet identifier.

    ``packet`` is the message as every receiver gets it (QoS, retain flag,
    properties and Subscription Identifiers included); its ``packet_id`` is
    ignored. Give it to :meth:`ServerConnection.publish_prepared
    <mqttproto.server.ServerConnection.publish_prepared>`: the connection
    writes ``head``, the identifier it allocates and ``tail`` (QoS 0:
    ``head`` alone), with no copy of the payload and no encoding.

    Its attributes, all read-only (setting or deleting one raises
    :class:`AttributeError`):

    - ``packet`` and ``version``: as given;
    - ``v5``: whether ``version`` is MQTT 5.0;
    - ``qos``: the packet's QoS, ``packet.qos``;
    - ``head`` and ``tail``: as :func:`encode_publish_split` gives them;
    - ``size``: the bytes on the wire, packet identifier included.

    :raises LocalProtocolError: the packet cannot be sent with ``version``
        (as :func:`encode_packet`).
    :raises TypeError: ``packet`` is not a :class:`PublishPacket`.
    :raises ValueError: ``version`` is not a protocol version.
    """

    __slots__ = ()

    packet: PublishPacket
    version: ProtocolVersion
    v5: bool
    qos: QoS
    head: bytes
    tail: bytes
    size: int

    def __init__(self, packet: PublishPacket, *, version: ProtocolVersion) -> None:
        head, tail = encode_publish_split(packet, version=version)
        qos = packet.qos
        # Written through the slots' own descriptors, since __setattr__
        # refuses every write (cheaper than object.__setattr__ by name).
        _set_head(self, head)
        _set_tail(self, tail)
        _set_packet(self, packet)
        _set_version(self, version)
        _set_v5(self, version == _V5)
        _set_qos(self, qos)
        _set_size(self, len(head) + len(tail) + (2 if qos else 0))

    #: The two bytes of a packet identifier, between ``head`` and ``tail``.
    packet_id_bytes = staticmethod(_u16)

    def with_topic_alias(self, alias: int, *, send_topic: bool) -> PreparedPublish:
        """This MQTT 5 PUBLISH with Topic Alias ``alias``: with its topic name
        (``send_topic``, which sets the alias) or with an empty one (which
        uses it; MQTT 5.0 section 3.3.2.3.4). Made once for each ``(alias,
        send_topic)`` and kept with this one, so that the clients of a
        fan-out that use the same alias for the topic share its bytes.

        :raises LocalProtocolError: not MQTT 5, the packet already has a
            Topic Alias, or ``alias`` is outside 1..65535 [MQTT-3.3.2-8].
        """
        if not self.v5:
            raise LocalProtocolError("topic aliases exist in MQTT 5 only")
        packet = self.packet
        if packet.topic_alias is not None:
            raise LocalProtocolError("the PUBLISH already has a Topic Alias")
        try:
            cache: dict[tuple[int, bool], PreparedPublish] = _get_aliased(self)
        except AttributeError:
            cache = {}
            _set_aliased(self, cache)
        key = (alias, send_topic)
        found = cache.get(key)
        if found is None:
            if len(cache) >= _ALIASED_FORMS:
                cache.clear()  # more aliases than clients share: bounded
            fields = dict(vars(packet))
            fields["topic_alias"] = alias
            if not send_topic:
                fields["topic"] = ""
            found = cache[key] = type(self)(_build(PublishPacket, fields), version=self.version)
        return found

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"PreparedPublish is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"PreparedPublish is immutable: cannot delete {name!r}")

    def __reduce__(self) -> tuple[Any, ...]:
        # Built anew from what it was made of (copy, pickle).
        return prepare_publish, (self.packet, self.version)

    def __repr__(self) -> str:
        return f"PreparedPublish({self.packet!r}, version={self.version!r})"


class _Unsealed(_PreparedSlots):
    """A PreparedPublish being filled: its attributes are written as any
    slot is (a class of its own that sets ``__setattr__``, even to
    ``object.__setattr__``, makes every write a Python-level call), and
    then its class becomes :class:`PreparedPublish`, whose layout it shares."""

    __slots__ = ()


def prepare_publish(packet: PublishPacket, version: ProtocolVersion) -> PreparedPublish:
    """``PreparedPublish(packet, version=version)`` without the cost of a
    class call (a broker builds one per message)."""
    if type(packet) is PublishPacket and not packet.qos and version in _VERSIONS:
        # encode_publish_split's QoS 0 case, without its call.
        head = _encode_publish(packet, version)
        tail = b""
    else:
        head, tail = encode_publish_split(packet, version=version)
    qos = packet.qos
    # Plain slot writes, then sealed: a third of what __init__'s writes
    # through the descriptors cost.
    # Typed as what it becomes; a sibling with the same slots until sealed.
    prepared: PreparedPublish = _new(_Unsealed)  # type: ignore[assignment]
    prepared.head = head
    prepared.tail = tail
    prepared.packet = packet
    prepared.version = version
    prepared.v5 = version == _V5
    prepared.qos = qos
    prepared.size = len(head) + len(tail) + (2 if qos else 0)
    prepared.__class__ = PreparedPublish
    sealed: PreparedPublish = prepared
    return sealed


_set_head, _set_tail, _set_packet, _set_version, _set_v5, _set_qos, _set_size = (
    _PreparedSlots.__dict__[name].__set__
    for name in ("head", "tail", "packet", "version", "v5", "qos", "size")
)
_get_aliased = _PreparedSlots.__dict__["_aliased"].__get__
_set_aliased = _PreparedSlots.__dict__["_aliased"].__set__
#: Aliased forms kept with one PreparedPublish at most (each a few hundred
#: bytes plus the payload's copy).
_ALIASED_FORMS: Final = 8
