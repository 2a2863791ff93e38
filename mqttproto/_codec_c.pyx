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

The source is in parts, which this file includes in order: the C
constructor (``_codec_c_constructor.pxi``), decoding (``_codec_c_decode.pxi``),
the reader (``_codec_c_reader.pxi``), the PUBLISH encoder
(``_codec_c_encode_publish.pxi``) and the other encoders
(``_codec_c_encode.pxi``). They are one module: a name defined in one part is
seen by the parts after it.

Bounds: every buffer read in the parts is preceded by a check against ``end`` (the
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


include "_codec_c_constructor.pxi"


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


include "_codec_c_decode.pxi"
include "_codec_c_reader.pxi"
include "_codec_c_encode_publish.pxi"
include "_codec_c_encode.pxi"
