# Part of mqttproto/_codec_c.pyx, which includes its parts in order (one
# extension module, one C file).
#
# Decoding: the caches of recent values, the primitive readers, the decoders
# and decode_packet.


# ---------------------------------------------------------------------------
# Caches of recently decoded topic names and user properties.
#
# The reference keeps dicts keyed by the raw bytes; looking one up needs a
# bytes object of the key first. Here the raw bytes are hashed in place into a
# small direct-mapped table and compared with memcmp, so a hit allocates
# nothing. Only values that decoded and validated completely are stored (the
# same rule as the reference), so a hit returns what decoding would. The size
# is fixed, which bounds the memory: at most _SLOTS x _CACHE_MAX_LENGTH bytes.

cdef enum:
    _SLOTS = 1024  # a power of two: the slot is a masked hash
    _CACHE_MAX_LENGTH = 256

cdef list _topic_keys = [None] * _SLOTS
cdef list _topic_values = [None] * _SLOTS
cdef list _pair_keys = [None] * _SLOTS
cdef list _pair_values = [None] * _SLOTS
# PUBLISH property blocks the inline path read whole (the length byte
# included, so at most 128 bytes) -> (expiry or None, user properties or
# None, the user property count and size the limit checks saw), as the
# reference's _decode_fields._publish_block_cache.
cdef list _block_keys = [None] * _SLOTS
cdef list _block_values = [None] * _SLOTS


cdef inline Py_ssize_t _slot(const unsigned char *p, Py_ssize_t n) noexcept:
    """Hash the length and up to the first and last eight bytes."""
    cdef uint64_t head = 0
    cdef uint64_t tail = 0
    cdef Py_ssize_t i
    if n >= 8:
        memcpy(&head, p, 8)
        memcpy(&tail, p + n - 8, 8)
    else:
        for i in range(n):
            head = (head << 8) | p[i]
    cdef uint64_t h = (<uint64_t>n + 1) * 0x9E3779B97F4A7C15ULL
    h ^= head * 0xFF51AFD7ED558CCDULL
    h ^= h >> 29
    h ^= tail * 0xC4CEB9FE1A85EC53ULL
    h ^= h >> 32
    return <Py_ssize_t>(h & (_SLOTS - 1))


@cython.boundscheck(False)  # slot < _SLOTS == len(keys) by construction
@cython.wraparound(False)
cdef inline object _cache_get(list keys, list values, const unsigned char *p, Py_ssize_t n):
    cdef Py_ssize_t slot = _slot(p, n)
    cdef object key = keys[slot]
    if (
        key is not None
        and PyBytes_GET_SIZE(key) == n
        and memcmp(PyBytes_AS_STRING(key), p, n) == 0
    ):
        return values[slot]
    return None


@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline void _cache_put(
    list keys, list values, const unsigned char *p, Py_ssize_t n, object value
) except *:
    cdef Py_ssize_t slot = _slot(p, n)
    keys[slot] = PyBytes_FromStringAndSize(<const char *>p, n)
    values[slot] = value


# ---------------------------------------------------------------------------
# Primitive readers


cdef Py_ssize_t _read_varint(
    const unsigned char *buf, Py_ssize_t pos, Py_ssize_t end, Py_ssize_t *value
) except -1:
    """Read a variable byte integer into ``value``; return the position after it.

    The twin of ``_decode_fields._read_varint``, with its messages.
    """
    cdef Py_ssize_t result = 0
    cdef int shift = 0
    cdef int count
    cdef unsigned char byte
    for count in range(4):
        if pos >= end:
            raise MalformedPacket("variable byte integer runs past the end of the packet")
        byte = buf[pos]
        pos += 1
        result |= (<Py_ssize_t>(byte & 0x7F)) << shift
        if not byte & 0x80:
            # [MQTT-1.5.5-1] the encoding must use the minimum number of bytes.
            if count and not byte:
                raise MalformedPacket("variable byte integer is not minimally encoded")
            value[0] = result
            return pos
        shift += 7
    # Four bytes is the limit; a fifth continuation is malformed [MQTT-1.5.5-1].
    raise MalformedPacket("variable byte integer longer than four bytes")


cdef object _decode_topic(const unsigned char *p, Py_ssize_t n):
    """Decode a PUBLISH topic name (the twin of ``_decode_fields._decode_topic_name``)."""
    cdef object topic
    try:
        # CPython's strict UTF-8 decoder, as bytes.decode(): it rejects overlong
        # forms, encoded surrogates [MQTT-1.5.4-1] and code points past U+10FFFF.
        topic = PyUnicode_DecodeUTF8(<const char *>p, n, NULL)
    except UnicodeDecodeError:
        raise MalformedPacket("topic name is not well-formed UTF-8 [MQTT-1.5.4-1]") from None
    # In well-formed UTF-8 the byte 0x00 only ever encodes U+0000, and the bytes
    # '+' and '#' only ever encode those characters: scanning the raw bytes is
    # scanning the text.
    if memchr(p, 0, n) != NULL:
        raise MalformedPacket("topic name contains U+0000 [MQTT-1.5.4-2]")
    if (
        n and n <= _CACHE_MAX_LENGTH
        and memchr(p, b'+', n) == NULL and memchr(p, b'#', n) == NULL
    ):
        _cache_put(_topic_keys, _topic_values, p, n, topic)
    return topic


@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline bint _is_ascii(const unsigned char *p, Py_ssize_t n) noexcept:
    """Whether the ``n`` bytes at ``p`` are all below 0x80, eight at a time."""
    cdef uint64_t word
    cdef Py_ssize_t i = 0
    while i + 8 <= n:
        memcpy(&word, p + i, 8)
        if word & 0x8080808080808080ULL:
            return False
        i += 8
    while i < n:
        if p[i] & 0x80:
            return False
        i += 1
    return True


cdef Py_ssize_t _check_utf8(
    const unsigned char *buf, Py_ssize_t pos, Py_ssize_t end, str what
) except -1:
    """The checks of ``_decode_fields._read_utf8``, in its order and with its
    messages, without building the string; return the position after it."""
    cdef Py_ssize_t n, stop
    if pos + 2 > end:
        raise MalformedPacket(f"{what} runs past the end of the packet")
    n = (buf[pos] << 8) | buf[pos + 1]
    stop = pos + 2 + n
    if stop > end:
        raise MalformedPacket(f"{what} runs past the end of the packet")
    # ASCII is well-formed UTF-8; anything else goes through CPython's strict
    # decoder, as in the reference [MQTT-1.5.4-1], and the result is dropped.
    if not _is_ascii(buf + pos + 2, n):
        try:
            PyUnicode_DecodeUTF8(<const char *>buf + pos + 2, n, NULL)
        except UnicodeDecodeError:
            raise MalformedPacket(f"{what} is not well-formed UTF-8") from None
    # In well-formed UTF-8 the byte 0x00 only ever encodes U+0000.
    if memchr(buf + pos + 2, 0, n) != NULL:
        raise MalformedPacket(f"{what} contains U+0000 [MQTT-1.5.4-2]")
    return stop


cdef Py_ssize_t _check_subscription_identifier(
    const unsigned char *buf, Py_ssize_t pos, Py_ssize_t end
) except -1:
    """What ``_decode_fields._decode_properties`` checks of a Subscription
    Identifier at ``pos`` (after its identifier), in its order and with its
    messages, without building it; return the position after it."""
    cdef uint32_t value
    cdef unsigned char byte
    cdef int count
    if pos < end and 0 < buf[pos] < 0x80:
        return pos + 1  # 1 to 127: the common case
    # The steps of _decode_fields._read_varint [MQTT-1.5.5-1].
    value = 0
    for count in range(4):
        if pos >= end:
            raise MalformedPacket("variable byte integer runs past the end of the packet")
        byte = buf[pos]
        pos += 1
        value |= (<uint32_t>(byte & 0x7F)) << (7 * count)
        if not byte & 0x80:
            if count and not byte:
                raise MalformedPacket("variable byte integer is not minimally encoded")
            if not value:
                # 0 is a Protocol Error (5.0 section 3.3.2.3.8); four bytes
                # cannot exceed the maximum, 268,435,455.
                spec = _SUBSCRIPTION_IDENTIFIER
                raise RemoteProtocolError(f"{spec.identifier.name} has invalid value {value}")
            return pos
    raise MalformedPacket("variable byte integer longer than four bytes")


def _skip_properties(
    bytes data not None, Py_ssize_t pos, Py_ssize_t end, bint users, bint identifiers
):
    """The twin of ``_decode_fields._skip_properties``: from ``pos`` (an
    identifier), check the User Properties (when ``users``) and Subscription
    Identifiers (when ``identifiers``) directly there without building them;
    return the position of the first other property, or ``end``."""
    cdef const unsigned char *buf = <const unsigned char *>PyBytes_AS_STRING(data)
    cdef unsigned char identifier
    if not 0 <= pos <= end <= PyBytes_GET_SIZE(data):
        raise ValueError("bounds outside the data")
    while pos < end:
        identifier = buf[pos]
        if identifier == 0x26 and users:
            pos = _check_utf8(buf, pos + 1, end, "user property name")
            pos = _check_utf8(buf, pos, end, "user property value")
        elif identifier == 0x0B and identifiers:
            pos = _check_subscription_identifier(buf, pos + 1, end)
        else:
            break
    return pos


# ---------------------------------------------------------------------------
# Decoders


cdef object _last_expiry = None  # the int object of the last expiry read
cdef uint32_t _last_expiry_value = 0


cdef int _publish_properties(
    bytes data, const unsigned char *buf, Py_ssize_t pos, Py_ssize_t end, object packet,
    object limit, Py_ssize_t *out_pos
) except -1:
    """The twin of ``_decode_fields._read_publish_properties``; store them on ``packet``.

    Message Expiry Interval and User Property are read inline; anything else
    or anything unusual (user properties past the ``limit`` too) goes to the
    reference ``_decode_properties``, which reads the whole block again and
    raises the precise error. Sets ``out_pos`` to the position after the
    block; returns whether a Topic Alias was among the properties.
    """
    global _last_expiry, _last_expiry_value
    cdef Py_ssize_t start = pos
    cdef Py_ssize_t length = buf[pos] if pos < end else 0x80
    cdef Py_ssize_t stop = pos + 1 + length
    cdef Py_ssize_t value_at, pair_end
    cdef unsigned char identifier
    cdef bint expiry_seen = False
    cdef object first_pair = None
    cdef list user_properties = None
    cdef object pair
    cdef uint32_t expiry
    cdef Py_ssize_t user_count = 0, user_bytes = 0, needed_bytes = 0
    cdef object known
    if length < 0x80 and stop <= end:
        known = _cache_get(_block_keys, _block_values, buf + start, stop - start)
        if known is not None and (limit is None or (
            <Py_ssize_t>(<tuple>known)[2] <= <Py_ssize_t>limit.count
            and <Py_ssize_t>(<tuple>known)[3] <= <Py_ssize_t>limit.size
        )):
            if (<tuple>known)[0] is not None:
                PyObject_GenericSetAttr(packet, "message_expiry_interval", (<tuple>known)[0])
            if (<tuple>known)[1] is not None:
                PyObject_GenericSetAttr(packet, "user_properties", (<tuple>known)[1])
            out_pos[0] = stop
            return False
        pos += 1
        while pos < stop:
            identifier = buf[pos]
            if identifier == 0x26:
                # Past the limit: the general path. The first one never is,
                # so a PUBLISH with one user property reads no limit.
                if user_count and limit is not None and (
                    user_count > <Py_ssize_t>limit.count or user_bytes > <Py_ssize_t>limit.size
                ):
                    break
                # User property: two length-prefixed strings, looked up whole.
                pair = None
                pair_end = 0
                if pos + 3 <= stop:
                    value_at = pos + 3 + ((buf[pos + 1] << 8) | buf[pos + 2])
                    if value_at + 2 <= stop:
                        pair_end = value_at + 2 + ((buf[value_at] << 8) | buf[value_at + 1])
                        if pair_end <= stop:
                            pair = _cache_get(
                                _pair_keys, _pair_values, buf + pos + 1, pair_end - pos - 1
                            )
                if pair is None:
                    pair, pair_end = _decode_user_property(data, pos + 1, stop)
                    if pair_end - pos - 1 <= _CACHE_MAX_LENGTH:
                        _cache_put(
                            _pair_keys, _pair_values, buf + pos + 1, pair_end - pos - 1, pair
                        )
                if first_pair is None:
                    first_pair = pair
                elif user_properties is None:
                    user_properties = [first_pair, pair]
                else:
                    user_properties.append(pair)
                needed_bytes = user_bytes
                user_count += 1
                user_bytes += pair_end - pos - 5  # less the identifier and two lengths
                pos = pair_end
            elif identifier == 0x02 and pos + 5 <= stop and not expiry_seen:
                expiry = (
                    (<uint32_t>buf[pos + 1] << 24) | (<uint32_t>buf[pos + 2] << 16)
                    | (<uint32_t>buf[pos + 3] << 8) | buf[pos + 4]
                )
                # Streams repeat one expiry: reuse its int object.
                if _last_expiry is None or expiry != _last_expiry_value:
                    _last_expiry = expiry
                    _last_expiry_value = expiry
                PyObject_GenericSetAttr(packet, "message_expiry_interval", _last_expiry)
                expiry_seen = True
                pos += 5
            else:
                break
        else:
            pairs = None
            if user_properties is not None:
                pairs = tuple(user_properties)
            elif first_pair is not None:
                pairs = (first_pair,)
            if pairs is not None:
                PyObject_GenericSetAttr(packet, "user_properties", pairs)
            # Remembered whole, with the limit checks it passed: the count
            # and size of the user properties before its last one.
            _cache_put(
                _block_keys, _block_values, buf + start, stop - start,
                (_last_expiry if expiry_seen else None, pairs,
                 user_count - 1 if user_count else 0, needed_bytes),
            )  # fmt: skip
            out_pos[0] = pos
            return False
    properties, pos = _decode_properties(data, start, end, _PUBLISH_KIND, limit)
    out_pos[0] = pos
    for key, value in (<dict>properties).items():
        PyObject_GenericSetAttr(packet, key, value)
    return "topic_alias" in properties


cdef object _decode_publish(
    bytes data, const unsigned char *buf, int flags, Py_ssize_t pos, Py_ssize_t end, bint v5,
    object limit
):
    """The twin of ``_decode._decode_publish``: same checks, same order."""
    cdef int qos = (flags >> 1) & 0x03
    cdef Py_ssize_t n, stop
    cdef const unsigned char *raw
    cdef bint valid_topic
    cdef long packet_id
    if qos == 3:
        raise MalformedPacket("PUBLISH with QoS 3 [MQTT-3.3.1-4]")
    if pos + 2 > end:
        raise MalformedPacket("topic name runs past the end of PUBLISH")
    n = (buf[pos] << 8) | buf[pos + 1]
    stop = pos + 2 + n
    if stop > end:
        raise MalformedPacket("topic name runs past the end of PUBLISH")
    raw = buf + pos + 2
    topic = _cache_get(_topic_keys, _topic_values, raw, n)
    # A cached name is known to be non-empty and free of wildcards.
    valid_topic = topic is not None
    if topic is None:
        topic = _decode_topic(raw, n)
        valid_topic = n > 0 and memchr(raw, b'+', n) == NULL and memchr(raw, b'#', n) == NULL
    pos = stop
    # Only the values that differ from the class defaults are stored.
    packet = _new_instance(PublishPacket)
    if qos:
        if pos + 2 > end:
            raise MalformedPacket("packet identifier runs past the end of PUBLISH")
        packet_id = (buf[pos] << 8) | buf[pos + 1]
        if not packet_id:
            raise RemoteProtocolError("PUBLISH with packet identifier 0 [MQTT-2.2.1-3]")
        pos += 2
        PyObject_GenericSetAttr(packet, "qos", _QOS1 if qos == 1 else _QOS2)
        PyObject_GenericSetAttr(packet, "packet_id", packet_id)
        if flags & 0x08:
            PyObject_GenericSetAttr(packet, "duplicate", True)
    elif flags & 0x08:
        raise RemoteProtocolError("DUP flag set on a QoS 0 PUBLISH [MQTT-3.3.1-2]")
    if flags & 0x01:
        PyObject_GenericSetAttr(packet, "retain", True)
    cdef bint has_alias
    if v5:
        if pos < end and not buf[pos]:
            pos += 1  # no properties: the common case
            if not valid_topic:
                _check_topic_name(topic, v5=True, has_alias=False)
        else:
            has_alias = _publish_properties(data, buf, pos, end, packet, limit, &pos)
            if not valid_topic:
                _check_topic_name(topic, v5=True, has_alias=has_alias)
    elif not valid_topic:
        _check_topic_name(topic, v5=False, has_alias=False)
    PyObject_GenericSetAttr(packet, "topic", topic)
    PyObject_GenericSetAttr(
        packet, "payload", PyBytes_FromStringAndSize(<const char *>buf + pos, end - pos)
    )
    return packet


cdef object _decode_ack(
    bytes data, const unsigned char *buf, int kind, int flags,
    Py_ssize_t pos, Py_ssize_t end, bint v5, object limit
):
    """PUBACK, PUBREC, PUBREL, PUBCOMP: the twin of ``_decode._decode_ack``."""
    cdef Py_ssize_t index = kind - 4
    cdef str name = _ACK_NAMES[index]
    cdef long packet_id
    cdef int code
    if flags != (0x02 if kind == 6 else 0x00):
        # [MQTT-3.6.1-1]: PUBREL flags are 0010; the others 0000.
        raise MalformedPacket(f"reserved flags 0x{flags:X} set in {name}")
    if pos + 2 > end:
        raise MalformedPacket("packet identifier runs past the end of the packet")
    packet_id = (buf[pos] << 8) | buf[pos + 1]
    if not packet_id:
        # [MQTT-2.2.1-3] (5.0) / [MQTT-2.3.1-1] (3.1.1): identifiers are non-zero.
        raise RemoteProtocolError("packet identifier 0")
    pos += 2
    packet = _new_instance(_ACK_CLASSES[index])
    PyObject_GenericSetAttr(packet, "packet_id", packet_id)
    if v5 and pos < end:
        # The reason code and properties may be left out when the code is
        # 0x00 and there are no properties (section 3.4.2.1).
        code = buf[pos]
        reason = _REASON.get(code)
        if reason is None or reason not in _ACK_CODES[index]:
            raise MalformedPacket(f"reason code 0x{code:02X} is not valid in {name}")
        PyObject_GenericSetAttr(packet, "reason_code", reason)
        pos += 1
        if pos < end:
            properties, pos = _decode_properties(data, pos, end, _ACK_KINDS[index], limit)
            for key, value in (<dict>properties).items():
                PyObject_GenericSetAttr(packet, key, value)
    if pos != end:
        raise MalformedPacket(f"{end - pos} unexpected bytes at the end of {name}")
    return packet


cdef object _decode_ping(int kind, int flags, Py_ssize_t pos, Py_ssize_t end):
    """PINGREQ and PINGRESP: no flags, no body; the reference's shared instances."""
    name = "PINGREQ" if kind == 12 else "PINGRESP"
    if flags:
        # [MQTT-2.1.3-1] (5.0) / [MQTT-2.2.2-1] (3.1.1): reserved flags.
        raise MalformedPacket(f"reserved flags 0x{flags:X} set in {name}")
    if pos != end:
        raise MalformedPacket(f"{end - pos} unexpected bytes at the end of {name}")
    return _PINGREQ if kind == 12 else _PINGRESP


cdef object _decode_one(
    bytes data, const unsigned char *buf, int first, Py_ssize_t pos, Py_ssize_t end,
    object version, object limit
):
    """Decode one packet body: compiled for the hot types, else the reference."""
    cdef int kind = first >> 4
    if kind == 3:
        return _decode_publish(data, buf, first & 0x0F, pos, end, version == 5, limit)
    if 4 <= kind <= 7:
        return _decode_ack(data, buf, kind, first & 0x0F, pos, end, version == 5, limit)
    if kind == 12 or kind == 13:
        return _decode_ping(kind, first & 0x0F, pos, end)
    return _decode_body(data, first, pos, end, version, limit)


def decode_packet(
    data, *, version, max_user_properties=None, max_user_property_bytes=None,
    max_subscription_identifiers=None
):
    """Decode exactly one complete packet (see ``_codec_py.decode_packet``)."""
    cdef bytes whole = bytes(data)
    cdef Py_ssize_t end = PyBytes_GET_SIZE(whole)
    cdef const unsigned char *buf = <const unsigned char *>PyBytes_AS_STRING(whole)
    cdef Py_ssize_t length, pos
    if end < 2:
        raise MalformedPacket("a packet has at least two bytes")
    pos = _read_varint(buf, 1, end, &length)
    if pos + length != end:
        raise MalformedPacket(
            f"remaining length {length} does not match the {end - pos} bytes given"
        )
    if version not in _VERSIONS:
        raise ValueError(f"unknown protocol version {version!r}")
    limit = _property_limit(
        max_user_properties, max_user_property_bytes, max_subscription_identifiers,
        _skip_properties,
    )
    level = int(version)
    try:
        return _decode_one(whole, buf, buf[0], pos, end, level, limit)
    except ProtocolError:
        raise
    except (IndexError, ValueError, KeyError, TypeError) as exc:
        # The same safety net as the reference's _decode_body.
        raise MalformedPacket(f"malformed packet ({exc.__class__.__name__})") from exc
