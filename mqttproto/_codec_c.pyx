# cython: language_level=3
"""The compiled twin of the packet codec.

Same entry points as :mod:`mqttproto._codec_py` (the reference):
:func:`decode_packet`, :func:`encode_packet`, :class:`PacketReader`,
:func:`encode_ack`, :func:`encode_publish_split` and :class:`PreparedPublish`,
with the same results, the same exception classes and the same reason codes
for every input.
``tests/test_differential.py`` holds the two to that.

How the work is split -- read this before changing either twin:

- **Compiled here** (the hot paths): the fixed header and Remaining Length,
  the stream reader loop, PUBLISH decoding (with the inline fast path for
  Message Expiry Interval and User Property, as in ``_decode``), the four
  publish acknowledgements (PUBACK, PUBREC, PUBREL, PUBCOMP), PINGREQ and
  PINGRESP decoding, PUBLISH and acknowledgement encoding, and the
  encoders that build no packet object: :func:`encode_ack`;
  :func:`encode_publish_split`, which writes the head and the tail of a
  PUBLISH straight into two bytes objects; and :class:`PreparedPublish`,
  which holds those two, written into it by the same code with no Python
  frame. UTF-8 is
  validated by CPython's strict decoder (``PyUnicode_DecodeUTF8``) straight
  from the stream buffer, which is exactly what ``bytes.decode()`` runs.
- **Delegated to the pure-Python reference**: every other packet type
  (CONNECT, CONNACK, SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, DISCONNECT,
  AUTH) and every general property block (``_decode_fields._decode_properties``).
  These are rare on a connection; calling the reference keeps one copy of
  their rules. One piece of it is compiled and handed to the reference: the
  walk over the User Properties and Subscription Identifiers past their
  limits (:func:`_skip_properties`, given to it through
  ``_decode_fields.PropertyLimit``), which is what a flood of them costs.
- **Encoding takes a fast path only for canonical packets**: exact ``str``
  topics, exact ``bytes`` payloads, QoS enum members or ints, ``True``/
  ``False`` flags, property values of their exact types. Any other shape --
  including every packet the protocol refuses -- is handed to the reference
  encoder, which then either encodes it or raises the precise error. So the
  fast path never needs its own copy of an error message: it only has to be
  sure that the reference would accept the packet and produce these bytes.
  :func:`encode_ack`, :func:`encode_publish_split` and
  :class:`PreparedPublish` follow the same rule with their arguments:
  canonical ones are encoded here, anything else goes to
  ``_encode_server.encode_ack`` / ``_encode_server.encode_publish_split``.

Tables (reason code sets, the property table, QoS members) and the topic
validators are imported from the pure modules, never copied.

Packets are the same public attrs classes. They are built the way
``_codec_common._build`` builds them: ``object.__new__`` (here through the
C-API) and only the non-default values written into the instance ``__dict__``.

Bounds: every buffer read below is preceded by a check against ``end`` (the
end of the packet) or ``stop`` (the end of a field), mirroring the reference
line by line. Raw ``const unsigned char *`` reads are not bounds-checked by
Cython, so those checks are the only guard; keep them when editing.
"""

cimport cython
from cpython.tuple cimport PyTuple_GET_ITEM
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem
from cpython.object cimport PyObject
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memchr, memcmp, memcpy

import sys

import attrs

from . import _decode, _decode_fields, _encode, _encode_server
from . import packets as _packets
from ._codec_common import (
    _PUBACK_CODES,
    _PUBREL_CODES,
    _QOS,
    _REASON,
    _VERSIONS,
    MAX_REMAINING_LENGTH,
    _u16,
)
from .enums import PacketType, ProtocolVersion, QoS, ReasonCode
from .errors import MalformedPacket, PacketTooLarge, ProtocolError, RemoteProtocolError
from .packets import (
    ConnectPacket,
    PubAckPacket,
    PubCompPacket,
    PublishPacket,
    PubRecPacket,
    PubRelPacket,
)

__all__ = [
    "PacketReader",
    "PreparedPublish",
    "decode_packet",
    "encode_ack",
    "encode_packet",
    "encode_publish_split",
    "prepare_publish",
]


cdef extern from "Python.h":
    # Declared here without an exception clause: a NULL result is handled by
    # the caller (it clears the error and takes the reference path).
    const char *PyUnicode_AsUTF8AndSize(object text, Py_ssize_t *size)
    # A compact ASCII str keeps its characters, which are its UTF-8 form, in
    # place: read without the call.
    bint PyUnicode_IS_COMPACT_ASCII(object text)
    const void *PyUnicode_DATA(object text)
    Py_ssize_t PyUnicode_GET_LENGTH(object text)
    void PyErr_Clear()
    object PyObject_GenericGetDict(object obj, void *context)
    # object.__setattr__: stores into the instance without the frozen class's
    # __setattr__ (which refuses every write), as _codec_common._build does
    # through __dict__. On CPython 3.11+ it fills the inline attribute values
    # without materializing a dict, which is the cheapest way to build one.
    int PyObject_GenericSetAttr(object obj, object name, object value) except -1
    bint PyDict_Next(object d, Py_ssize_t *pos, PyObject **key, PyObject **value)
    # Without an exception clause: only ever given an int (or a subclass),
    # for which it cannot fail; an overflow is reported through the flag.
    long PyLong_AsLongAndOverflow(object obj, int *overflow)


cdef extern from *:
    """
    /* object.__new__(cls) without the Python call: exactly what
       _codec_common._new does, for the frozen attrs packet classes. */
    static PyObject *mqttproto_empty_tuple = NULL;

    static PyObject *mqttproto_new_instance(PyObject *cls) {
        if (mqttproto_empty_tuple == NULL) {
            mqttproto_empty_tuple = PyTuple_New(0);
            if (mqttproto_empty_tuple == NULL) return NULL;
        }
        return PyBaseObject_Type.tp_new((PyTypeObject *)cls, mqttproto_empty_tuple, NULL);
    }
    """
    object _new_instance "mqttproto_new_instance"(object cls)


cdef extern from *:
    """
    #include <structmember.h>

    /* Where a __slots__ member descriptor keeps its value in an instance. */
    static Py_ssize_t mqttproto_slot_offset(PyObject *descr) {
        if (Py_TYPE(descr) != &PyMemberDescr_Type) {
            PyErr_SetString(PyExc_TypeError, "not a __slots__ member");
            return -1;
        }
        return ((PyMemberDescrObject *)descr)->d_member->offset;
    }

    /* Fill a slot of an object being built (what the descriptor's __set__
       does, without the lookup and the call). */
    static void mqttproto_put_slot(PyObject *obj, Py_ssize_t offset, PyObject *value) {
        PyObject **slot = (PyObject **)((char *)obj + offset);
        PyObject *old = *slot;
        Py_INCREF(value);
        *slot = value;
        Py_XDECREF(old);
    }
    """
    Py_ssize_t _slot_offset "mqttproto_slot_offset"(object descr) except -1
    void _put_slot "mqttproto_put_slot"(object obj, Py_ssize_t offset, object value)


cdef extern from *:
    """
    /* A C constructor for PublishPacket: the type object's own vectorcall
       slot, which CPython calls for PublishPacket(...) (as for list(...))
       before the generic type call, which builds an argument tuple and a
       keyword dict and runs the Python __init__ in a frame. It stores
       exactly what packets.PublishPacket.__init__ stores: topic, payload and
       qos always, any other field when it is not that field's default (by
       identity), converting a user_properties or subscription_identifiers
       that is not an exact tuple with the reference's own converters. Any
       call it does not understand -- too many positional arguments, an
       unknown or repeated keyword, no topic -- takes the generic path, so
       that the Python __init__ raises its own TypeError. Subclasses do not
       inherit the slot. */
    #define MQTTPROTO_PUBLISH_FIELDS 14
    #define MQTTPROTO_PUBLISH_POSITIONAL 6
    #define MQTTPROTO_USER_PROPERTIES 11
    #define MQTTPROTO_SUBSCRIPTION_IDENTIFIERS 12
    static PyTypeObject *mqttproto_publish_type = NULL;
    static PyObject *mqttproto_publish_names[MQTTPROTO_PUBLISH_FIELDS];
    static PyObject *mqttproto_publish_defaults[MQTTPROTO_PUBLISH_FIELDS];
    static PyObject *mqttproto_publish_converters[2];
    static PyObject *mqttproto_publish_kwnames = NULL;
    static unsigned char mqttproto_publish_index[MQTTPROTO_PUBLISH_FIELDS];

    static PyObject *mqttproto_publish_generic(
        PyObject *type, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames
    ) {
        /* What CPython does without the slot: type.__call__(args, kwargs). */
        PyObject *tuple, *kwargs = NULL, *result;
        Py_ssize_t i, count = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
        tuple = PyTuple_New(nargs);
        if (tuple == NULL) return NULL;
        for (i = 0; i < nargs; i++) {
            Py_INCREF(args[i]);
            PyTuple_SET_ITEM(tuple, i, args[i]);
        }
        if (count) {
            kwargs = PyDict_New();
            if (kwargs == NULL) { Py_DECREF(tuple); return NULL; }
            for (i = 0; i < count; i++) {
                if (PyDict_SetItem(kwargs, PyTuple_GET_ITEM(kwnames, i), args[nargs + i]) < 0) {
                    Py_DECREF(tuple); Py_DECREF(kwargs); return NULL;
                }
            }
        }
        result = PyType_Type.tp_call(type, tuple, kwargs);
        Py_DECREF(tuple);
        Py_XDECREF(kwargs);
        return result;
    }

    static PyObject *mqttproto_publish_vectorcall(
        PyObject *type, PyObject *const *args, size_t nargsf, PyObject *kwnames
    ) {
        PyObject *values[MQTTPROTO_PUBLISH_FIELDS] = {NULL};
        PyObject *obj, *fields, *value, *converted;
        Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
        Py_ssize_t i, j, count;
        if ((PyTypeObject *)type != mqttproto_publish_type
                || nargs > MQTTPROTO_PUBLISH_POSITIONAL) {
            return mqttproto_publish_generic(type, args, nargs, kwnames);
        }
        for (i = 0; i < nargs; i++) values[i] = args[i];
        count = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
        if (count && kwnames != mqttproto_publish_kwnames) {
            /* Keyword names are interned (code constants, attrs' field
               names): matched by identity; anything else is generic. A call
               site passes the same kwnames tuple every time, so the last
               one's field indexes are kept (with a reference to it, so that
               its identity stays its own). */
            unsigned char index[MQTTPROTO_PUBLISH_FIELDS];
            if (count > MQTTPROTO_PUBLISH_FIELDS) {
                return mqttproto_publish_generic(type, args, nargs, kwnames);
            }
            for (i = 0; i < count; i++) {
                PyObject *key = PyTuple_GET_ITEM(kwnames, i);
                for (j = 0; j < MQTTPROTO_PUBLISH_FIELDS; j++) {
                    if (key == mqttproto_publish_names[j]) break;
                }
                if (j == MQTTPROTO_PUBLISH_FIELDS) {
                    return mqttproto_publish_generic(type, args, nargs, kwnames);
                }
                index[i] = (unsigned char)j;
            }
            Py_INCREF(kwnames);
            Py_XSETREF(mqttproto_publish_kwnames, kwnames);
            memcpy(mqttproto_publish_index, index, (size_t)count);
        }
        for (i = 0; i < count; i++) {
            j = mqttproto_publish_index[i];
            if (values[j] != NULL) {  /* given twice: the generic path says so */
                return mqttproto_publish_generic(type, args, nargs, kwnames);
            }
            values[j] = args[nargs + i];
        }
        if (values[0] == NULL) return mqttproto_publish_generic(type, args, nargs, kwnames);
        obj = PyBaseObject_Type.tp_new((PyTypeObject *)type, mqttproto_empty_tuple, NULL);
        if (obj == NULL) return NULL;
        /* Into the instance dict, as the Python __init__ stores (the fields
           have no descriptors: their class attributes are the defaults);
           the encoder reads that dict next. */
        fields = PyObject_GenericGetDict(obj, NULL);
        if (fields == NULL) { Py_DECREF(obj); return NULL; }
        for (i = 0; i < MQTTPROTO_PUBLISH_FIELDS; i++) {
            value = values[i];
            if (i < 3) {
                if (value == NULL) value = mqttproto_publish_defaults[i];
            }
            else if (value == NULL || value == mqttproto_publish_defaults[i]) {
                continue;
            }
            if ((i == MQTTPROTO_USER_PROPERTIES || i == MQTTPROTO_SUBSCRIPTION_IDENTIFIERS)
                    && !PyTuple_CheckExact(value)) {
                converted = PyObject_CallOneArg(
                    mqttproto_publish_converters[i - MQTTPROTO_USER_PROPERTIES], value);
                if (converted == NULL) { Py_DECREF(fields); Py_DECREF(obj); return NULL; }
                j = PyDict_SetItem(fields, mqttproto_publish_names[i], converted);
                Py_DECREF(converted);
            }
            else {
                j = PyDict_SetItem(fields, mqttproto_publish_names[i], value);
            }
            if (j < 0) { Py_DECREF(fields); Py_DECREF(obj); return NULL; }
        }
        Py_DECREF(fields);
        return obj;
    }

    static int mqttproto_publish_setup(
        PyObject *type, PyObject *names, PyObject *defaults, PyObject *pairs, PyObject *ints
    ) {
        Py_ssize_t i;
        if (mqttproto_empty_tuple == NULL) {
            mqttproto_empty_tuple = PyTuple_New(0);
            if (mqttproto_empty_tuple == NULL) return -1;
        }
        for (i = 0; i < MQTTPROTO_PUBLISH_FIELDS; i++) {
            Py_INCREF(PyTuple_GET_ITEM(names, i));
            mqttproto_publish_names[i] = PyTuple_GET_ITEM(names, i);
            Py_INCREF(PyTuple_GET_ITEM(defaults, i));
            mqttproto_publish_defaults[i] = PyTuple_GET_ITEM(defaults, i);
        }
        Py_INCREF(pairs);
        mqttproto_publish_converters[0] = pairs;
        Py_INCREF(ints);
        mqttproto_publish_converters[1] = ints;
        Py_INCREF(type);
        mqttproto_publish_type = (PyTypeObject *)type;
        return 0;
    }

    static int mqttproto_publish_constructor(int on) {
        int was = mqttproto_publish_type->tp_vectorcall == mqttproto_publish_vectorcall;
        mqttproto_publish_type->tp_vectorcall = on ? mqttproto_publish_vectorcall : NULL;
        return was;
    }
    """
    int _publish_setup "mqttproto_publish_setup"(
        object cls, tuple names, tuple defaults, object pairs, object ints
    ) except -1
    bint _publish_constructor "mqttproto_publish_constructor"(int on)


# The reference functions this module delegates to (see the docstring).
_decode_body = _decode._decode_body
_decode_properties = _decode_fields._decode_properties
_decode_user_property = _decode_fields._decode_user_property
_check_topic_name = _decode_fields._check_topic_name
_property_limit = _decode_fields.property_limit
_SUBSCRIPTION_IDENTIFIER = _decode_fields._SUBSCRIPTION_IDENTIFIER
_PINGREQ = _decode._PINGREQ
_PINGRESP = _decode._PINGRESP
cdef dict _ENCODERS = _encode._ENCODERS
_encode_publish_reference = _encode._encode_publish
_encode_ack_reference = _encode_server.encode_ack
_encode_publish_split_reference = _encode_server.encode_publish_split

cdef object _QOS0 = QoS.AT_MOST_ONCE
cdef object _QOS1 = QoS.AT_LEAST_ONCE
cdef object _QOS2 = QoS.EXACTLY_ONCE
cdef object _SUCCESS = ReasonCode.SUCCESS
cdef object _V31 = ProtocolVersion.MQTT_3_1
cdef object _V311 = ProtocolVersion.MQTT_3_1_1
cdef object _V5 = ProtocolVersion.MQTT_5_0
cdef object _PUBLISH_KIND = PacketType.PUBLISH

# Indexed by packet type - 4: PUBACK, PUBREC, PUBREL, PUBCOMP.
cdef tuple _ACK_CLASSES = (PubAckPacket, PubRecPacket, PubRelPacket, PubCompPacket)
cdef tuple _ACK_NAMES = ("PUBACK", "PUBREC", "PUBREL", "PUBCOMP")
cdef tuple _ACK_CODES = (_PUBACK_CODES, _PUBACK_CODES, _PUBREL_CODES, _PUBREL_CODES)
cdef tuple _ACK_KINDS = (PacketType.PUBACK, PacketType.PUBREC, PacketType.PUBREL,
                         PacketType.PUBCOMP)

cdef Py_ssize_t _MAX_REMAINING_LENGTH = MAX_REMAINING_LENGTH

# The same sets as _ACK_CODES, as a table indexed by [packet type - 4][code],
# for encode_ack: one byte read instead of a frozenset lookup.
cdef unsigned char _ACK_ALLOWED[4][256]
for _index, _codes in enumerate(_ACK_CODES):
    for _code in _codes:
        _ACK_ALLOWED[_index][<int>_code] = 1
del _index, _codes, _code


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


# ---------------------------------------------------------------------------
# The incremental reader


cdef class PacketReader:
    """Split a byte stream into packets, incrementally.

    The twin of ``_reader.PacketReader``; see its docstring for the contract.
    """

    cdef int _version  # -1 until a server reader sees CONNECT
    cdef Py_ssize_t _max_size  # -1: no maximum
    cdef list _pending  # None between packets (an idle reader holds no list)
    cdef Py_ssize_t _pending_size
    cdef Py_ssize_t _need
    cdef Py_ssize_t _declared
    cdef object _error
    cdef object _max_packet_size  # as given, for the error message
    cdef object _limit  # a _decode_fields.PropertyLimit, or None

    def __init__(
        self, *, version=None, max_packet_size=None, max_user_properties=None,
        max_user_property_bytes=None, max_subscription_identifiers=None
    ):
        if version is not None and version not in _VERSIONS:
            raise ValueError(f"unknown protocol version {version!r}")
        if max_packet_size is not None and max_packet_size < 2:
            raise ValueError("max_packet_size must be at least 2")
        self._limit = _property_limit(
            max_user_properties, max_user_property_bytes, max_subscription_identifiers,
            _skip_properties,
        )
        self._version = -1 if version is None else int(version)
        if max_packet_size is None:
            self._max_size = -1
        else:
            # A packet size is a whole number, so "size > limit" is the same
            # test against the limit's floor. A limit no packet can exceed
            # (the largest is MAX_REMAINING_LENGTH + 5 bytes) -- or a NaN,
            # which no size exceeds either -- is clamped to that size.
            limit = max_packet_size // 1
            if not limit <= MAX_REMAINING_LENGTH + 5:
                limit = MAX_REMAINING_LENGTH + 5
            self._max_size = int(limit)
        self._max_packet_size = max_packet_size
        self._pending = None
        self._pending_size = 0
        self._need = 0
        self._declared = 0
        self._error = None

    @property
    def version(self):
        """The protocol version in use; None until a server reader sees CONNECT."""
        return None if self._version < 0 else _VERSIONS[self._version]

    @property
    def buffered(self):
        """How many bytes of an incomplete packet are held."""
        return self._pending_size

    @property
    def incomplete_size(self):
        """The declared size of the incomplete packet; 0 if none or its
        fixed header is not complete (see the reference)."""
        return self._declared

    def feed(self, data):
        """Add ``data`` and return every packet it completes, in order."""
        cdef Py_ssize_t pos = 0
        cdef Py_ssize_t size
        cdef list packets
        if self._error is not None:
            # A fresh traceback each time, and no packets, as in the reference.
            self._error.preceding_packets = []
            raise self._error.with_traceback(None)
        if type(data) is not bytes:
            data = bytes(data)
        if self._pending:
            self._pending.append(data)
            self._pending_size += PyBytes_GET_SIZE(data)
            if self._pending_size < self._need:
                return []
            data = b"".join(self._pending)
            self._pending = None
            self._pending_size = 0
        elif not data:
            return []
        packets = []
        try:
            self._parse(data, &pos, packets)
        except ProtocolError as exc:
            exc.preceding_packets = packets
            self._fail(exc)
            raise
        except (IndexError, ValueError, KeyError, TypeError) as exc:
            error = MalformedPacket(f"malformed packet ({exc.__class__.__name__})")
            error.preceding_packets = packets
            self._fail(error)
            raise error from exc
        size = PyBytes_GET_SIZE(data)
        if pos < size:
            self._pending = [data[pos:]]
            self._pending_size = size - pos
        return packets

    cdef void _fail(self, object error):
        self._error = error
        self._pending = None
        self._pending_size = 0
        self._declared = 0

    cdef list _parse(self, bytes data, Py_ssize_t *out_pos, list packets):
        """Decode every complete packet of ``data`` into ``packets``; store where the rest starts."""
        cdef const unsigned char *buf = <const unsigned char *>PyBytes_AS_STRING(data)
        cdef Py_ssize_t size = PyBytes_GET_SIZE(data)
        cdef Py_ssize_t pos = 0
        cdef Py_ssize_t start, end, length, index, available
        cdef int first, byte
        cdef bint complete
        cdef object level = None if self._version < 0 else self._version
        cdef bint v5 = self._version == 5
        self._declared = 0
        while pos < size:
            # Fixed header: one type/flags byte, then the remaining length.
            first = buf[pos]
            if level is None and first >> 4 != 1:
                # Refused at its first byte: a peer that has not sent CONNECT
                # must not make a server buffer a packet body.
                raise RemoteProtocolError("the first packet must be CONNECT [MQTT-3.1.0-1]")
            start = pos + 1
            if start >= size:
                self._need = size - pos + 1
                break
            byte = buf[start]
            if byte < 0x80:
                length = byte
                start += 1
            else:
                # A multi-byte remaining length; it may be incomplete.
                available = min(size, start + 4)
                complete = False
                for index in range(start, available):
                    if buf[index] < 0x80:
                        start = _read_varint(buf, start, index + 1, &length)
                        complete = True
                        break
                if not complete:
                    if available - start == 4:
                        raise MalformedPacket(
                            "remaining length longer than four bytes [MQTT-1.5.5-1]"
                        )
                    self._need = available - pos + 1
                    break
            end = start + length
            if self._max_size >= 0 and end - pos > self._max_size:
                raise PacketTooLarge(
                    f"packet of {end - pos} bytes exceeds the maximum of {self._max_packet_size}"
                )
            if end > size:
                self._need = self._declared = end - pos
                break
            if level is None:
                connect = _decode_body(data, first, start, end, 0, self._limit)
                assert isinstance(connect, ConnectPacket)
                self._version = int(connect.protocol_version)
                level = self._version
                v5 = self._version == 5
                packets.append(connect)
            elif first >> 4 == 3:
                packets.append(
                    _decode_publish(data, buf, first & 0x0F, start, end, v5, self._limit)
                )
            else:
                packets.append(_decode_one(data, buf, first, start, end, level, self._limit))
            pos = end
        out_pos[0] = pos
        return packets


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
