"""Which TLS handshakes a broker server starts, and what it logs of them; no I/O.

A TLS handshake costs the server memory (OpenSSL's buffers, about 45 KiB)
and CPU (the key exchange) before the broker core hears of the connection,
so the core's ``max_connections`` alone cannot bound it. A connection to a
TLS listener goes through :class:`HandshakeGate` twice, in the three
servers alike:

1. when it is accepted (:meth:`HandshakeGate.admit`): it is *waiting* from
   then on, and counts toward the broker's ``max_connections`` with the
   broker's connections and the other waiting and handshaking ones;
2. when the client's first TLS record has arrived whole
   (:meth:`HandshakeGate.start`; see :func:`first_record_size`): only then is
   the TLS state made, and only while fewer than ``max_tls_handshakes``
   connections are *handshaking*.

Past either bound the connection is closed at once, with no TLS state made.
A silent or dribbling client thus holds a few KiB of the server and no
handshake slot (on the threads server's Unix socket listeners the
handshake starts at the accept: see there), and the key exchanges of
complete ClientHellos are bounded by ``max_tls_handshakes``. All of it,
from the accept to the end of the handshake, has ``tls_handshake_timeout``
seconds.

A flood is what these bounds are for, and a flood must not become a flood of
log lines: refusals, timeouts and failures are each logged through a
:class:`BurstLog`, which writes the first of a burst and then one line per
interval at most, with the number it did not write.
"""

from __future__ import annotations

import logging
import math
import ssl

import attrs

from ..broker import Broker

__all__ = [
    "DEFAULT_MAX_TLS_HANDSHAKES",
    "DEFAULT_TLS_HANDSHAKE_TIMEOUT",
    "LOG_INTERVAL",
    "MAX_PLAINTEXT_RECORD",
    "RECORD_HEADER",
    "BurstLog",
    "HandshakeGate",
    "TlsHandshakeStats",
    "first_record_size",
    "handshake_failure",
]

logger = logging.getLogger("mqttproto.broker")

#: Seconds a TLS handshake may take. A handshake is two round trips and one
#: key exchange: milliseconds on a LAN, rarely a second on a slow mobile
#: link or a small device, so 10 s leaves room for those and holds a silent
#: connection a sixth as long as asyncio's own default of 60 s.
DEFAULT_TLS_HANDSHAKE_TIMEOUT = 10.0

#: TLS handshakes a server has under way at once with TLS state (a whole
#: ClientHello received). Legitimate ones last a few round trips, so even a
#: reconnect storm of thousands of clients has far fewer than this under way
#: at any moment; 1,024 of them hold about 46 MiB (see the broker guide).
DEFAULT_MAX_TLS_HANDSHAKES = 1024

#: Seconds between two lines of one :class:`BurstLog`.
LOG_INTERVAL = 10.0


class BurstLog:
    """Logs the first event of a burst, then at most one line per ``interval``.

    An event within ``interval`` seconds of the last line is counted, not
    logged; the next line says how many were left out, and :meth:`flush`
    writes that count once a burst is over, so nothing goes uncounted.
    """

    __slots__ = ("_level", "_quiet_until", "_summary", "_unlogged", "interval")

    def __init__(self, level: int, summary: str, interval: float = LOG_INTERVAL) -> None:
        self._level = level
        #: "... %d more <what happened> ..." for the count left out.
        self._summary = summary
        self.interval = interval
        self._quiet_until = -math.inf
        self._unlogged = 0

    def event(self, now: float, message: str, *args: object) -> None:
        if now < self._quiet_until:
            self._unlogged += 1
            return
        if self._unlogged:
            message = f"{message} ({self._summary} before it, not logged one by one)"
            args = (*args, self._unlogged)
            self._unlogged = 0
        logger.log(self._level, message, *args)
        self._quiet_until = now + self.interval

    def flush(self, now: float, *, force: bool = False) -> None:
        """Write the count of events left out, once the burst is over (or now)."""
        if self._unlogged and (force or now >= self._quiet_until):
            logger.log(self._level, f"{self._summary}, not logged one by one", self._unlogged)
            self._unlogged = 0


#: Bytes of a TLS record header: content type, version (2), length (2).
RECORD_HEADER = 5
#: The longest plaintext record, which a ClientHello record is (RFC 8446 5.1).
MAX_PLAINTEXT_RECORD = 2**14
_HANDSHAKE_RECORD = 0x16


def first_record_size(head: bytes | bytearray) -> int | None:
    """The bytes (header included) of the first TLS record whose first bytes
    are ``head``, or :data:`RECORD_HEADER` while the header is incomplete.
    None: not a TLS handshake record (a plain MQTT client, say)."""
    if head and head[0] != _HANDSHAKE_RECORD:
        return None
    if len(head) < RECORD_HEADER:
        return RECORD_HEADER
    length = int.from_bytes(head[3:5], "big")
    if head[1] != 3 or not 0 < length <= MAX_PLAINTEXT_RECORD:
        return None
    return RECORD_HEADER + length


@attrs.frozen
class TlsHandshakeStats:
    """What a broker server's TLS handshakes came to since it started.

    :ivar waiting: connections to a TLS listener whose first TLS record has
        not arrived whole (no TLS state yet; they count toward
        ``max_connections``).
    :ivar handshaking: handshakes under way with TLS state (bounded by
        ``max_tls_handshakes``; they count toward ``max_connections`` too).
    :ivar completed: handshakes that succeeded (the broker then got the connection).
    :ivar refused: connections closed at once, with no TLS state made,
        because the broker's connections with the waiting and handshaking
        ones reached ``max_connections`` (at the accept) or
        ``max_tls_handshakes`` were handshaking (at the first record).
    :ivar timed_out: handshakes not finished within ``tls_handshake_timeout``
        of the accept.
    :ivar failed: handshakes that failed otherwise: a TLS error (a client
        certificate that does not verify, no TLS at all) or a peer that
        went away.
    """

    waiting: int
    handshaking: int
    completed: int
    refused: int
    timed_out: int
    failed: int

    @property
    def pending(self) -> int:
        """Connections accepted and not yet handed to the broker."""
        return self.waiting + self.handshaking


class HandshakeGate:
    """The bounds on a server's TLS handshakes, its counters and their logs.

    For each connection to a TLS listener a server calls :meth:`admit` at
    the accept (``False``: close it now), then :meth:`start` once the first
    TLS record has arrived whole, before making any TLS state (``False``:
    close it now, and nothing more), then :meth:`succeeded` when the
    handshake is done; or, if the connection ends before (after
    :meth:`timed_out` or :meth:`failed` when that is why), :meth:`release`
    with whether :meth:`start` had admitted it.
    """

    __slots__ = (
        "_broker",
        "_failures",
        "_refusals",
        "_timeouts",
        "completed",
        "failed_count",
        "handshaking",
        "max_handshakes",
        "refused",
        "timed_out_count",
        "timeout",
        "waiting",
    )

    def __init__(self, broker: Broker, *, max_handshakes: int, timeout: float) -> None:
        self._broker = broker
        self.max_handshakes = max_handshakes
        self.timeout = timeout
        self.waiting = 0
        self.handshaking = 0
        self.completed = 0
        self.refused = 0
        self.timed_out_count = 0
        self.failed_count = 0
        self._refusals = BurstLog(
            logging.WARNING, "%d more TLS connections closed before their handshake"
        )
        self._timeouts = BurstLog(logging.INFO, "%d more TLS handshakes timed out")
        self._failures = BurstLog(logging.INFO, "%d more TLS handshakes failed")

    def stats(self) -> TlsHandshakeStats:
        return TlsHandshakeStats(
            waiting=self.waiting,
            handshaking=self.handshaking,
            completed=self.completed,
            refused=self.refused,
            timed_out=self.timed_out_count,
            failed=self.failed_count,
        )

    def admit(self, now: float, peer: str) -> bool:
        """Whether a connection from ``peer``, just accepted, may stay."""
        self._flush(now)
        limit = self._broker.config.max_connections
        if limit is not None:
            connections = self._broker.connection_count
            pending = self.waiting + self.handshaking
            if connections + pending >= limit:
                self._refuse(
                    now,
                    "TLS connection from %s closed before its handshake: %d connections "
                    "and %d TLS handshakes pending reach max_connections (%d)",
                    peer,
                    connections,
                    pending,
                    limit,
                )
                return False
        self.waiting += 1
        return True

    def start(self, now: float, peer: str) -> bool:
        """Whether an admitted connection may make its TLS state and handshake."""
        self.waiting -= 1
        if self.handshaking >= self.max_handshakes:
            self._refuse(
                now,
                "TLS connection from %s closed before its handshake: "
                "%d TLS handshakes under way (max_tls_handshakes)",
                peer,
                self.handshaking,
            )
            return False
        self.handshaking += 1
        return True

    def _refuse(self, now: float, message: str, *args: object) -> None:
        self.refused += 1
        self._refusals.event(now, message, *args)

    def succeeded(self) -> None:
        self.handshaking -= 1
        self.completed += 1

    def timed_out(self, now: float, peer: str) -> None:
        self.timed_out_count += 1
        self._timeouts.event(
            now, "connection from %s: TLS handshake timed out after %.1f s", peer, self.timeout
        )

    def failed(self, now: float, peer: str, why: str | None) -> None:
        """A handshake failed: logged with ``why``, or only counted without
        (a peer that closed or reset the connection, as port scanners and
        load balancers' health checks do, is not worth a line)."""
        self.failed_count += 1
        if why is not None:
            self._failures.event(now, "connection from %s: TLS handshake failed: %s", peer, why)

    def release(self, started: bool) -> None:
        """An admitted connection ended before its handshake succeeded."""
        if started:
            self.handshaking -= 1
        else:
            self.waiting -= 1

    def _flush(self, now: float) -> None:
        self._refusals.flush(now)
        self._timeouts.flush(now)
        self._failures.flush(now)

    def close(self, now: float) -> None:
        """The server is closing: write every count not yet logged."""
        for log in (self._refusals, self._timeouts, self._failures):
            log.flush(now, force=True)


def handshake_failure(exc: BaseException) -> str | None:
    """Why a TLS handshake failed, for the log: OpenSSL's reason
    (``CERTIFICATE_VERIFY_FAILED``...). None: the peer went away (an EOF or
    a reset), which :meth:`HandshakeGate.failed` only counts. ``exc`` is
    the :class:`ssl.SSLError`, or an exception raised from one (trio's
    ``BrokenResourceError``)."""
    error = exc if isinstance(exc, ssl.SSLError) else exc.__cause__
    if not isinstance(error, ssl.SSLError) or isinstance(error, ssl.SSLEOFError):
        return None
    return str(error.reason or error)
