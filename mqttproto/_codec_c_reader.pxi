# Part of mqttproto/_codec_c.pyx, which includes its parts in order (one
# extension module, one C file).
#
# The incremental reader, PacketReader.


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
