# Part of mqttproto/_codec_c.pyx, which includes its parts in order (one
# extension module, one C file).
#
# Encoding a PUBLISH: the fields gathered from the instance dict, the writers,
# _encode_publish.


# ---------------------------------------------------------------------------
# Encoders. Each returns None when the packet is not in the canonical shape the
# fast path handles; encode_packet then calls the reference encoder.


# Field values are gathered in one pass over the instance dict, matching keys
# by identity against the interned field names (attrs' __init__ and this
# module store interned names), with the class defaults for absent fields
# (packets have no descriptors for their fields, so that is what getattr
# returns). A key that matches no name by identity -- only possible when a
# packet was tampered with -- sends the packet to the reference encoder.

cdef object _MISSING = object()  # a field without a class default (PUBLISH topic)


cdef tuple _field_names(cls):
    return tuple(sys.intern(field.name) for field in attrs.fields(cls))


cdef tuple _field_defaults(cls, tuple names):
    return tuple(getattr(cls, name, _MISSING) for name in names)


cdef enum:
    # The PublishPacket fields, in declaration order (checked at import below).
    P_TOPIC, P_PAYLOAD, P_QOS, P_RETAIN, P_DUPLICATE, P_PACKET_ID, P_FORMAT, P_EXPIRY,
    P_ALIAS, P_RESPONSE, P_CORRELATION, P_USER, P_SUBSCRIPTION_IDS, P_CONTENT, P_COUNT
    # The acknowledgement fields.
    A_PACKET_ID = 0, A_REASON, A_REASON_STRING, A_USER, A_COUNT

cdef tuple _PUBLISH_NAMES = _field_names(PublishPacket)
cdef tuple _PUBLISH_DEFAULTS = _field_defaults(PublishPacket, _PUBLISH_NAMES)
cdef tuple _ACK_FIELD_NAMES = _field_names(PubAckPacket)
cdef tuple _ACK_DEFAULTS = _field_defaults(PubAckPacket, _ACK_FIELD_NAMES)
assert _PUBLISH_NAMES == (
    "topic", "payload", "qos", "retain", "duplicate", "packet_id",
    "payload_format_indicator", "message_expiry_interval", "topic_alias",
    "response_topic", "correlation_data", "user_properties",
    "subscription_identifiers", "content_type",
), _PUBLISH_NAMES
assert _ACK_FIELD_NAMES == ("packet_id", "reason_code", "reason_string", "user_properties")
for _cls in _ACK_CLASSES:
    assert _field_names(_cls) == _ACK_FIELD_NAMES


# The C constructor of PublishPacket (see mqttproto_publish_vectorcall): the
# names and defaults above, the reference's converters. It is given to the
# class by _codec when it selects this codec, not by importing this module,
# so that the pure pass runs the Python __init__ even where both are loaded.
_publish_setup(
    PublishPacket, _PUBLISH_NAMES, _PUBLISH_DEFAULTS, _packets._user_properties, _packets._ints
)


def _use_compiled_constructors(bint on):
    """Give PublishPacket its C constructor (``on``) or take it back; return
    whether it had it."""
    return _publish_constructor(on)


cdef bint _gather(object packet, tuple names, tuple defaults, PyObject **values) except -1:
    """Fill ``values`` (borrowed references) with the packet's fields.

    Returns False when a key is not one of ``names`` by identity.
    """
    cdef Py_ssize_t count = len(names)
    cdef Py_ssize_t i
    cdef Py_ssize_t expected = 0
    cdef Py_ssize_t pos = 0
    cdef PyObject *key
    cdef PyObject *value
    for i in range(count):
        values[i] = PyTuple_GET_ITEM(defaults, i)
    # The dict is owned by the packet, which the caller holds: the borrowed
    # values stay alive, and nothing below runs Python code that could change it.
    state = PyObject_GenericGetDict(packet, NULL)
    while PyDict_Next(state, &pos, &key, &value):
        # Keys usually come in declaration order.
        if expected < count and key == PyTuple_GET_ITEM(names, expected):
            values[expected] = value
            expected += 1
            continue
        # A dict holding only the fields that differ from their defaults
        # skips some names: look on from the expected one first.
        i = expected + 1
        while i < count and key != PyTuple_GET_ITEM(names, i):
            i += 1
        if i >= count:
            i = 0
            while i < expected and key != PyTuple_GET_ITEM(names, i):
                i += 1
            if i == expected:
                return False
        values[i] = value
        expected = i + 1
    return True


cdef inline Py_ssize_t _varint_size(Py_ssize_t value) noexcept:
    if value < 0x80:
        return 1
    if value < 0x4000:
        return 2
    if value < 0x200000:
        return 3
    return 4


cdef inline char *_write_varint(char *out, Py_ssize_t value) noexcept:
    while True:
        if value < 0x80:
            out[0] = <char>value
            return out + 1
        out[0] = <char>((value & 0x7F) | 0x80)
        out += 1
        value >>= 7


cdef inline char *_write_u16(char *out, Py_ssize_t value) noexcept:
    out[0] = <char>(value >> 8)
    out[1] = <char>(value & 0xFF)
    return out + 2


cdef inline char *_write_string(char *out, const char *text, Py_ssize_t size) noexcept:
    out = _write_u16(out, size)
    memcpy(out, text, size)
    return out + size


cdef inline const char *_utf8(object text, Py_ssize_t *size):
    """The UTF-8 form of an exact str fit for a UTF-8 Encoded String, or NULL.

    NULL (with no exception set) when the reference would refuse it: a lone
    surrogate [MQTT-1.5.4-1], U+0000 [MQTT-1.5.4-2], or more than 65,535 bytes.
    For an ASCII str the UTF-8 form is the str's own storage: nothing is copied.
    """
    if type(text) is not str:
        return NULL
    cdef const char *raw
    if PyUnicode_IS_COMPACT_ASCII(text):
        raw = <const char *>PyUnicode_DATA(text)
        size[0] = PyUnicode_GET_LENGTH(text)
    else:
        raw = PyUnicode_AsUTF8AndSize(text, size)
        if raw == NULL:
            PyErr_Clear()
            return NULL
    if size[0] > 0xFFFF or memchr(raw, 0, size[0]) != NULL:
        return NULL
    return raw


cdef inline long _int_in(object value, long low, long high) noexcept:
    """``value``, an int or an int subclass (checked by the caller), if it is
    within [low, high], else -1. Reads the number in place: no Python code runs."""
    cdef int overflow = 0
    cdef long number = PyLong_AsLongAndOverflow(value, &overflow)
    if overflow or number < low or number > high:
        return -1
    return number


cdef inline long _exact_int(object value, long low, long high) except -2:
    """``value`` if it is an exact int within [low, high], else -1."""
    if type(value) is not int:
        return -1
    cdef long long number
    try:
        number = value
    except OverflowError:
        return -1
    if low <= number <= high:
        return <long>number
    return -1


cdef inline bint _is_topic_name(const char *raw, Py_ssize_t size) noexcept:
    """A non-empty topic name without wildcards [MQTT-4.7.3-1] [MQTT-3.3.2-2]
    (``raw`` from :func:`_utf8`, so free of U+0000 [MQTT-4.7.3-2])."""
    return (
        size > 0
        and memchr(raw, b'+', size) == NULL
        and memchr(raw, b'#', size) == NULL
    )


cdef inline char *_write_u32(char *out, uint32_t value) noexcept:
    out[0] = <char>((value >> 24) & 0xFF)
    out[1] = <char>((value >> 16) & 0xFF)
    out[2] = <char>((value >> 8) & 0xFF)
    out[3] = <char>(value & 0xFF)
    return out + 4


cdef object _encode_publish(object packet, bint v5, bint split, object prepared):
    """The canonical PUBLISH, encoded as ``_encode._encode_publish`` does; else None.

    With ``split`` (for :func:`encode_publish_split`) the result is
    ``(head, tail)``: for QoS 1 and 2 the bytes before and after the packet
    identifier, written straight into two bytes objects, the packet's own
    ``packet_id`` not looked at; for QoS 0 the whole packet and ``b""``.
    With ``prepared`` too (for :class:`PreparedPublish`) they go into its
    ``head`` and ``tail``, with its ``qos`` and ``size``, and the result is
    ``prepared``.
    """
    cdef PyObject *fields[P_COUNT]
    if not _gather(packet, _PUBLISH_NAMES, _PUBLISH_DEFAULTS, fields):
        return None
    # The values stay borrowed from the packet's dict (see _gather): until the
    # bytes are written nothing runs Python code, and the only allocations
    # are of bytes, which the collector does not track, so no collection (no
    # finalizer) can run in between. (An int too large for _exact_int raises
    # and catches an OverflowError, a tracked object, but then the fast path
    # only declines.) The hot ones are taken as locals.
    cdef object topic = <object>fields[P_TOPIC]
    cdef object payload = <object>fields[P_PAYLOAD]
    cdef object qos = <object>fields[P_QOS]
    cdef object retain = <object>fields[P_RETAIN]
    cdef object duplicate = <object>fields[P_DUPLICATE]
    cdef object packet_id = <object>fields[P_PACKET_ID]
    cdef object user_properties = <object>fields[P_USER]
    cdef PyObject *correlation = fields[P_CORRELATION]
    cdef PyObject *identifiers = fields[P_SUBSCRIPTION_IDS]
    cdef PyObject *alias = fields[P_ALIAS]
    cdef int first
    cdef long q, pid = 0, number, format_value = -1, alias_value = -1
    cdef long long expiry_value = -1
    cdef Py_ssize_t topic_size, payload_size, length, props = 0
    cdef Py_ssize_t key_size, val_size, content_size = 0, response_size = 0
    cdef Py_ssize_t correlation_size = 0
    cdef const char *topic_raw
    cdef const char *key_raw
    cdef const char *val_raw
    cdef const char *content_raw = NULL
    cdef const char *response_raw = NULL
    cdef char *out
    cdef object pair, value, result, tail

    if type(payload) is not bytes:
        return None
    if qos is _QOS0:
        q = 0
    elif qos is _QOS1:
        q = 1
    elif qos is _QOS2:
        q = 2
    else:
        q = _exact_int(qos, 0, 2)
        if q < 0:
            return None
    if retain is not True and retain is not False:
        return None
    if duplicate is not True and duplicate is not False:
        return None
    if q == 0:
        if packet_id is not None or duplicate is True:
            return None  # refused [MQTT-2.2.1-2] [MQTT-3.3.1-2]: the reference says why
        first = 0x30
    else:
        if not split:
            pid = _exact_int(packet_id, 1, 0xFFFF)  # [MQTT-2.2.1-3]
            if pid < 0:
                return None
        first = 0x32 if q == 1 else 0x34
        if duplicate is True:
            first |= 0x08
    if retain is True:
        first |= 0x01
    # A topic name is non-empty, free of wildcards [MQTT-3.3.2-2] and of U+0000
    # [MQTT-4.7.3-2]; in 5.0 it may be empty when a Topic Alias names the topic
    # [MQTT-3.3.2-1] (the alias itself is checked with the properties below).
    topic_raw = _utf8(topic, &topic_size)
    if topic_raw == NULL:
        return None
    if not _is_topic_name(topic_raw, topic_size) and (
        topic_size or not v5 or <object>alias is None
    ):
        return None

    if v5:
        # Every PUBLISH property, in the reference's order (by identifier).
        if <object>fields[P_FORMAT] is not None:
            format_value = _exact_int(<object>fields[P_FORMAT], 0, 1)
            if format_value < 0:
                return None
            props += 2
        value = <object>fields[P_EXPIRY]
        if value is not None:
            # Compared as Python ints: 2**32 - 1 does not fit a C long everywhere.
            if type(value) is not int or not 0 <= value <= 0xFFFFFFFF:
                return None
            expiry_value = value
            props += 5
        if <object>fields[P_CONTENT] is not None:
            content_raw = _utf8(<object>fields[P_CONTENT], &content_size)
            if content_raw == NULL:
                return None
            props += 3 + content_size
        if <object>fields[P_RESPONSE] is not None:
            # A Response Topic is a topic name [MQTT-3.3.2-14].
            response_raw = _utf8(<object>fields[P_RESPONSE], &response_size)
            if response_raw == NULL or not _is_topic_name(response_raw, response_size):
                return None
            props += 3 + response_size
        if <object>correlation is not None:
            if type(<object>correlation) is not bytes:
                return None
            correlation_size = PyBytes_GET_SIZE(<object>correlation)
            if correlation_size > 0xFFFF:
                return None
            props += 3 + correlation_size
        if type(<object>identifiers) is not tuple:
            return None
        for value in <tuple>identifiers:
            # A Subscription Identifier is 1..268,435,455 (section 3.3.2.3.8).
            number = _exact_int(value, 1, 268_435_455)
            if number < 0:
                return None
            props += 1 + _varint_size(number)
        if <object>alias is not None:
            alias_value = _exact_int(<object>alias, 1, 0xFFFF)  # [MQTT-3.3.2-8]
            if alias_value < 0:
                return None
            props += 3
        if type(user_properties) is not tuple:
            return None
        for pair in <tuple>user_properties:
            if type(pair) is not tuple or len(<tuple>pair) != 2:
                return None
            if _utf8((<tuple>pair)[0], &key_size) == NULL:
                return None
            if _utf8((<tuple>pair)[1], &val_size) == NULL:
                return None
            props += 5 + key_size + val_size
        if props > _MAX_REMAINING_LENGTH:
            return None
        length = 2 + topic_size + (2 if q else 0) + _varint_size(props) + props
    else:
        # Before 5.0 every property must be absent: the reference refuses the rest.
        if (
            <object>fields[P_FORMAT] is not None
            or <object>fields[P_EXPIRY] is not None
            or <object>alias is not None
            or <object>fields[P_RESPONSE] is not None
            or <object>correlation is not None
            or <object>fields[P_CONTENT] is not None
        ):
            return None
        if type(<object>identifiers) is not tuple or len(<tuple>identifiers):
            return None
        if type(user_properties) is not tuple or len(<tuple>user_properties):
            return None
        length = 2 + topic_size + (2 if q else 0)
    payload_size = PyBytes_GET_SIZE(payload)
    length += payload_size
    if length > _MAX_REMAINING_LENGTH:
        return None

    if split and q:
        # The fixed header and the topic name; the packet identifier's two
        # bytes; the rest of the Remaining Length.
        result = PyBytes_FromStringAndSize(NULL, 1 + _varint_size(length) + 2 + topic_size)
        tail = PyBytes_FromStringAndSize(NULL, length - 2 - topic_size - 2)
    else:
        result = PyBytes_FromStringAndSize(NULL, 1 + _varint_size(length) + length)
    out = PyBytes_AS_STRING(result)
    out[0] = <char>first
    out = _write_varint(out + 1, length)
    out = _write_string(out, topic_raw, topic_size)
    if q:
        if split:
            out = PyBytes_AS_STRING(tail)
        else:
            out = _write_u16(out, pid)
    if v5:
        out = _write_varint(out, props)
        if format_value >= 0:
            out[0] = 0x01
            out[1] = <char>format_value
            out += 2
        if expiry_value >= 0:
            out[0] = 0x02
            out = _write_u32(out + 1, <uint32_t>expiry_value)
        if content_raw != NULL:
            out[0] = 0x03
            out = _write_string(out + 1, content_raw, content_size)
        if response_raw != NULL:
            out[0] = 0x08
            out = _write_string(out + 1, response_raw, response_size)
        if <object>correlation is not None:
            out[0] = 0x09
            out = _write_string(out + 1, PyBytes_AS_STRING(<object>correlation), correlation_size)
        for value in <tuple>identifiers:
            out[0] = 0x0B
            out = _write_varint(out + 1, <long>value)
        if alias_value >= 0:
            out[0] = 0x23
            out = _write_u16(out + 1, alias_value)
        for pair in <tuple>user_properties:
            key_raw = _utf8((<tuple>pair)[0], &key_size)
            val_raw = _utf8((<tuple>pair)[1], &val_size)
            out[0] = 0x26
            out = _write_string(out + 1, key_raw, key_size)
            out = _write_string(out, val_raw, val_size)
    memcpy(out, PyBytes_AS_STRING(payload), payload_size)
    if not split:
        return result
    if not q:
        tail = b""
    if prepared is None:
        return (result, tail)
    # Straight into the slots: the class's __setattr__ refuses every write.
    _put_slot(prepared, _AT_HEAD, result)
    _put_slot(prepared, _AT_TAIL, tail)
    _put_slot(prepared, _AT_QOS, qos)
    # The packet identifier included.
    _put_slot(prepared, _AT_SIZE, 1 + _varint_size(length) + length)
    return prepared
