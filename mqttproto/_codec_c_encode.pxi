# Part of mqttproto/_codec_c.pyx, which includes its parts in order (one
# extension module, one C file).
#
# The acknowledgements' encoder and the public encoders (encode_packet,
# encode_ack, encode_publish_split, PreparedPublish).


cdef object _encode_ack(object packet, int kind, bint v5):
    """A canonical PUBACK/PUBREC/PUBREL/PUBCOMP without properties; else None."""
    cdef PyObject *fields[A_COUNT]
    if not _gather(packet, _ACK_FIELD_NAMES, _ACK_DEFAULTS, fields):
        return None
    cdef long pid = _exact_int(<object>fields[A_PACKET_ID], 1, 0xFFFF)
    cdef object reason = <object>fields[A_REASON]
    cdef long code
    cdef char *out
    if pid < 0:
        return None
    if <object>fields[A_REASON_STRING] is not None:
        return None
    user_properties = <object>fields[A_USER]
    if type(user_properties) is not tuple or len(<tuple>user_properties):
        return None
    if type(reason) is not ReasonCode:
        return None
    if v5:
        if reason not in _ACK_CODES[kind - 4]:
            return None
        code = int(reason)
    elif reason is not _SUCCESS:
        return None  # reason codes exist in 5.0 only: the reference refuses
    else:
        code = 0
    # The reason code may be left out when it is 0x00 (section 3.4.2.1).
    result = PyBytes_FromStringAndSize(NULL, 5 if code else 4)
    out = PyBytes_AS_STRING(result)
    out[0] = <char>((kind << 4) | (0x02 if kind == 6 else 0x00))
    out[1] = 3 if code else 2
    _write_u16(out + 2, pid)
    if code:
        out[4] = <char>code
    return result


def encode_packet(packet, *, version):
    """Validate ``packet`` for ``version`` and encode it (see ``_codec_py.encode_packet``)."""
    cls = type(packet)
    cdef bint known_version = version is _V5 or version is _V311 or version is _V31
    cdef int kind = 0
    if cls is PublishPacket:
        kind = 3
    elif cls is PubAckPacket:
        kind = 4
    elif cls is PubRecPacket:
        kind = 5
    elif cls is PubRelPacket:
        kind = 6
    elif cls is PubCompPacket:
        kind = 7
    if kind and known_version:
        # The checks below (a packet class, a known version) pass: go straight
        # to the fast path, and to the reference encoder if it declines.
        if kind == 3:
            encoded = _encode_publish(packet, version is _V5, False, None)
            return _encode_publish_reference(packet, version) if encoded is None else encoded
        encoded = _encode_ack(packet, kind, version is _V5)
        return _ENCODERS[cls](packet, version) if encoded is None else encoded
    encoder = _ENCODERS.get(cls)
    if encoder is None:
        raise TypeError(f"not an MQTT packet: {packet!r}")
    if version not in _VERSIONS:
        raise ValueError(f"unknown protocol version {version!r}")
    return encoder(packet, version)


def encode_ack(packet_type, packet_id, reason_code=0, *, version):
    """A PUBACK, PUBREC, PUBREL or PUBCOMP without properties (see
    ``_codec_py.encode_ack``): the bytes ``encode_packet`` makes of it."""
    cdef long kind, pid, code
    cdef bint v5
    cdef char *out
    # Canonical arguments only: a known version by identity, the packet type
    # and the reason code as enum members or exact ints, an exact int packet
    # identifier. Anything else, and every refusal, is the reference's.
    if version is _V5:
        v5 = True
    elif version is _V311 or version is _V31:
        v5 = False
    else:
        return _encode_ack_reference(packet_type, packet_id, reason_code, version=version)
    if (
        (type(packet_type) is PacketType or type(packet_type) is int)
        and type(packet_id) is int
        and (type(reason_code) is ReasonCode or type(reason_code) is int)
    ):
        kind = _int_in(packet_type, 4, 7)
        pid = _int_in(packet_id, 1, 0xFFFF)  # [MQTT-2.2.1-3]
        code = _int_in(reason_code, 0, 0xFF)
        if (
            kind >= 0
            and pid >= 0
            and code >= 0
            # Before 5.0 an acknowledgement carries no reason code.
            and (v5 or not code)
            and _ACK_ALLOWED[kind - 4][code]
        ):
            # Success may be left out when there are no properties (section 3.4.2.1).
            result = PyBytes_FromStringAndSize(NULL, 5 if code else 4)
            out = PyBytes_AS_STRING(result)
            # PUBREL's fixed header flags are 0010 [MQTT-3.6.1-1].
            out[0] = <char>((kind << 4) | (0x02 if kind == 6 else 0x00))
            out[1] = 3 if code else 2
            _write_u16(out + 2, pid)
            if code:
                out[4] = <char>code
            return result
    return _encode_ack_reference(packet_type, packet_id, reason_code, version=version)


def encode_publish_split(packet, *, version):
    """A PUBLISH encoded once as ``(head, tail)`` around its packet identifier
    (see ``_codec_py.encode_publish_split``)."""
    if type(packet) is PublishPacket and (
        version is _V5 or version is _V311 or version is _V31
    ):
        encoded = _encode_publish(packet, version is _V5, True, None)
        if encoded is not None:
            return encoded
    return _encode_publish_split_reference(packet, version=version)


# Where the reference class keeps each attribute (its __slots__).
_slots = _encode_server._PreparedSlots.__dict__
cdef Py_ssize_t _AT_HEAD = _slot_offset(_slots["head"])
cdef Py_ssize_t _AT_TAIL = _slot_offset(_slots["tail"])
cdef Py_ssize_t _AT_QOS = _slot_offset(_slots["qos"])
cdef Py_ssize_t _AT_SIZE = _slot_offset(_slots["size"])
cdef Py_ssize_t _AT_PACKET = _slot_offset(_slots["packet"])
cdef Py_ssize_t _AT_VERSION = _slot_offset(_slots["version"])
cdef Py_ssize_t _AT_V5 = _slot_offset(_slots["v5"])
del _slots


cdef bint _prepare(object prepared, object packet, object version) except -1:
    """Fill ``prepared`` on the fast path; False if it declines the arguments
    (canonical ones only: a PublishPacket, a version by identity)."""
    cdef int v5 = -1
    if version is _V5:
        v5 = 1
    elif version is _V311 or version is _V31:
        v5 = 0
    if v5 < 0 or type(packet) is not PublishPacket:
        return False
    if _encode_publish(packet, v5, True, prepared) is None:
        return False
    _put_slot(prepared, _AT_PACKET, packet)
    _put_slot(prepared, _AT_VERSION, version)
    _put_slot(prepared, _AT_V5, v5 == 1)
    return True


class PreparedPublish(_encode_server.PreparedPublish):
    """A PUBLISH encoded once for one protocol version, to be sent to many
    clients, each with its own packet identifier.

    The twin of ``_encode_server.PreparedPublish``, whose docstring holds the
    contract: a subclass that keeps its slots (which CPython reads at the
    cost of a plain attribute) with a compiled ``__init__``, where
    ``_encode_publish`` writes the head and the tail straight into the new
    object. What the fast path declines goes through the reference, which
    encodes it or raises its error.
    """

    __slots__ = ()

    def __init__(self, packet, *, version):
        if not _prepare(self, packet, version):
            _encode_server.PreparedPublish.__init__(self, packet, version=version)

    def __reduce__(self):
        # Built anew from what it was made of (copy, pickle), as this twin.
        return prepare_publish, (self.packet, self.version)


def prepare_publish(packet, version):
    """``PreparedPublish(packet, version=version)`` without the cost of a
    class call: the object is allocated and filled here."""
    prepared = _new_instance(PreparedPublish)
    if not _prepare(prepared, packet, version):
        _encode_server.PreparedPublish.__init__(prepared, packet, version=version)
    return prepared
