"""The incremental stream reader."""

from __future__ import annotations

from ._codec_common import (
    _VERSIONS,
)
from ._decode import _decode_body, _decode_publish
from ._decode_fields import _read_varint, _skip_properties, property_limit
from .enums import PacketType, ProtocolVersion
from .errors import (
    MalformedPacket,
    PacketTooLarge,
    RemoteProtocolError,
)
from .packets import (
    ConnectPacket,
    Packet,
)

__all__ = ["PacketReader"]

# ---------------------------------------------------------------------------
# The incremental reader


class PacketReader:
    """Split a byte stream into packets, incrementally.

    :param version: the protocol version of the connection. ``None`` (a
        server before CONNECT) accepts only a CONNECT as the first packet
        [MQTT-3.1.0-1] and then adopts the level that CONNECT carries.
    :param max_packet_size: the largest whole packet (fixed header included)
        to accept. The declared length is checked as soon as the fixed header
        is complete, so an oversized claim fails with
        :class:`~mqttproto.PacketTooLarge` before its body is buffered.
    :param max_user_properties: stop building the User Properties of a
        property block once it holds more than this many (see below).
    :param max_user_property_bytes: stop building them once their names and
        values take more than this many UTF-8 bytes together.
    :param max_subscription_identifiers: stop building the Subscription
        Identifiers of a PUBLISH once it holds more than this many (see
        below).

    The reader holds at most one incomplete packet. After it raises, it is
    broken: every later :meth:`feed` raises the same error, because the
    stream position is lost and the connection must be closed anyway.

    **User-property limits.** By default every User Property is built. With
    either limit (a whole number, 0 or more; None for none), the
    ``user_properties`` of a property block stop growing as soon as they are
    past it: they hold the first ``max_user_properties + 1``, or those up to
    and including the one that took their bytes past
    ``max_user_property_bytes``. That prefix is itself past the limit, so a
    receiver that applies the same limit to ``user_properties`` refuses the
    packet exactly as it would refuse the whole list -- which is what the
    broker does. The User Properties after it are read but not built: their
    lengths, their UTF-8 [MQTT-1.5.4-1] and the absence of U+0000
    [MQTT-1.5.4-2] are checked as always, and so is everything else in the
    packet. So a limit never changes which packets are accepted, which error
    is raised (a packet past the limit and malformed later in its property
    block is refused as malformed, as without a limit), nor any field but
    ``user_properties``; it bounds what a flood of User Properties costs in
    objects by the limit instead of by the packet size. Each property block
    counts on its own: a CONNECT has two, its own and its will's.

    **Subscription Identifier limit.** The same for the Subscription
    Identifiers of a PUBLISH. With ``max_subscription_identifiers`` (0 or
    more; None, the default, for none), ``subscription_identifiers`` hold at
    most the first ``max_subscription_identifiers + 1``, which is past the
    limit whenever the whole list is. The rest are checked, not built: each
    must still be a minimally encoded Variable Byte Integer [MQTT-1.5.5-1]
    within the property block, and not 0 (a Protocol Error). Only PUBLISH is
    limited: a SUBSCRIBE carries at most one, and a second is refused as
    always. A server's reader can take 0, since a client sends none
    [MQTT-3.3.4-6], and refuse any PUBLISH whose list is not empty, with the
    answer the whole list would get. A client's reader should take none: a
    server sends those of every matching subscription [MQTT-3.3.4-3]
    [MQTT-3.3.4-4], as many as there are.

    **Order of checks.** A limit moves no check: the properties of a block
    are read in order, each checked as without a limit, and the packet after
    the block as well. So a packet past a limit is refused for the first
    rule it breaks in that order (malformed later in its property block: as
    malformed; a Topic Alias 0: as such), or returned with the lists cut;
    deciding what a list past the limit means is the receiver's, after
    decoding, as it would be with the whole list.
    """

    __slots__ = (
        "_declared",
        "_error",
        "_limit",
        "_max_packet_size",
        "_need",
        "_pending",
        "_pending_size",
        "_version",
    )

    def __init__(
        self,
        *,
        version: ProtocolVersion | None = None,
        max_packet_size: int | None = None,
        max_user_properties: int | None = None,
        max_user_property_bytes: int | None = None,
        max_subscription_identifiers: int | None = None,
    ) -> None:
        if version is not None and version not in _VERSIONS:
            raise ValueError(f"unknown protocol version {version!r}")
        if max_packet_size is not None and max_packet_size < 2:
            raise ValueError("max_packet_size must be at least 2")
        self._limit = property_limit(
            max_user_properties,
            max_user_property_bytes,
            max_subscription_identifiers,
            _skip_properties,
        )
        self._version: int | None = None if version is None else int(version)
        self._max_packet_size = max_packet_size
        # Chunks of one incomplete packet, joined once it is complete, so a
        # large packet arriving in many small reads costs linear time; None
        # between packets (an idle reader holds no list).
        self._pending: list[bytes] | None = None
        self._pending_size = 0
        # Bytes the pending packet needs before it is worth parsing again.
        self._need = 0
        # The whole size of the pending packet, once its fixed header is in.
        self._declared = 0
        self._error: RemoteProtocolError | None = None

    @property
    def version(self) -> ProtocolVersion | None:
        """The protocol version in use; None until a server reader sees CONNECT."""
        return None if self._version is None else _VERSIONS[self._version]

    @property
    def buffered(self) -> int:
        """How many bytes of an incomplete packet are held."""
        return self._pending_size

    @property
    def incomplete_size(self) -> int:
        """The size of the incomplete packet being received (fixed header
        included) as its fixed header declares it; 0 when no packet is
        incomplete or its fixed header is not complete yet.

        What the reader will hold once that packet is complete (never more
        than ``max_packet_size``): a server that budgets memory across
        connections can reserve it before reading the body.
        """
        return self._declared

    def feed(self, data: bytes) -> list[Packet]:
        """Add ``data`` and return every packet it completes, in order.

        Returns an empty list when more data is needed.

        :raises RemoteProtocolError: (or a subclass: ``MalformedPacket``,
            ``PacketTooLarge``, ``UnsupportedProtocolVersion``) at the first
            packet that breaks a rule. The packets complete before it in the
            same call are not returned; they are in the exception's
            ``preceding_packets`` list, so that a connection can act on them
            first, exactly as if they had arrived in an earlier read.
        """
        if self._error is not None:
            # A fresh traceback each time, so that a caller who keeps feeding
            # a broken reader does not grow the stored exception.
            self._error.preceding_packets = []
            raise self._error.with_traceback(None)
        if type(data) is not bytes:
            data = bytes(data)
        pending = self._pending
        if pending:
            pending.append(data)
            self._pending_size += len(data)
            if self._pending_size < self._need:
                return []
            data = b"".join(pending)
            self._pending = None
            self._pending_size = 0
        elif not data:
            return []
        packets: list[Packet] = []
        try:
            pos = self._parse(data, packets)
        except RemoteProtocolError as exc:
            exc.preceding_packets = packets
            self._fail(exc)
            raise
        except (IndexError, ValueError, KeyError, TypeError) as exc:  # pragma: no cover
            # Every read is bounds-checked; this net turns a missed check into
            # the error the caller expects instead of a crash.
            error = MalformedPacket(f"malformed packet ({exc.__class__.__name__})")
            error.preceding_packets = packets
            self._fail(error)
            raise error from exc
        if pos < len(data):
            self._pending = [data[pos:]]
            self._pending_size = len(data) - pos
        return packets

    def _fail(self, error: RemoteProtocolError) -> None:
        self._error = error
        self._pending = None
        self._pending_size = 0
        self._declared = 0

    def _parse(self, data: bytes, packets: list[Packet]) -> int:
        """Decode the complete packets of ``data`` into ``packets``; return where the rest starts."""
        append = packets.append
        size = len(data)
        max_size = self._max_packet_size
        version = self._version
        limit = self._limit
        decode_publish = _decode_publish
        pos = 0
        self._declared = 0
        while pos < size:
            # Fixed header: one type/flags byte, then the remaining length.
            first = data[pos]
            if version is None and first >> 4 != PacketType.CONNECT:
                # Refused at its first byte: a peer that has not sent CONNECT
                # must not make a server buffer a packet body.
                raise RemoteProtocolError("the first packet must be CONNECT [MQTT-3.1.0-1]")
            start = pos + 1
            if start >= size:
                self._need = size - pos + 1
                return pos
            byte = data[start]
            if byte < 0x80:
                length = byte
                start += 1
            else:
                length, start = self._read_length(data, start, size, pos)
                if length < 0:
                    return pos
            end = start + length
            if max_size is not None and end - pos > max_size:
                raise PacketTooLarge(
                    f"packet of {end - pos} bytes exceeds the maximum of {max_size}"
                )
            if end > size:
                self._need = self._declared = end - pos
                return pos
            if first >> 4 == 3 and version is not None:
                append(decode_publish(data, first & 0x0F, start, end, version, limit))
            elif version is None:
                connect = _decode_body(data, first, start, end, 0, limit)
                assert isinstance(connect, ConnectPacket)
                version = self._version = int(connect.protocol_version)
                append(connect)
            else:
                append(_decode_body(data, first, start, end, version, limit))
            pos = end
        return pos

    def _read_length(self, data: bytes, start: int, size: int, pos: int) -> tuple[int, int]:
        """Read a multi-byte remaining length; (-1, start) when it is incomplete."""
        available = min(size, start + 4)
        for index in range(start, available):
            if data[index] < 0x80:
                return _read_varint(data, start, index + 1)
        if available - start == 4:
            raise MalformedPacket("remaining length longer than four bytes [MQTT-1.5.5-1]")
        self._need = available - pos + 1
        return -1, start
