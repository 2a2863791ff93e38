"""TLS for :class:`~mqttproto.adapters.asyncio.BrokerServer`, with bounded handshakes,
and which protocol serves a listener (:func:`protocol_factory`).

A TLS listener accepts plain TCP (or Unix) connections, and each gets a
:class:`TlsLayer`: to the socket's transport it is the protocol, to the MQTT
protocol above it (:class:`._asyncio_peers._Peer`) it is the transport. It
drives an :class:`ssl.SSLObject` over two :class:`ssl.MemoryBIO` itself
instead of passing the context to ``create_server``, for two reasons:

- the bounds come first: the server's :class:`._tls_gate.HandshakeGate`
  decides in ``connection_made`` whether the connection may stay
  (``max_connections``), and again once the client's first TLS record has
  arrived whole whether it may make its TLS state (``max_tls_handshakes``);
  if not, it is aborted before any TLS state exists. Until then it holds
  the bytes of that record (at most 16 KiB; a ClientHello is usually
  under 2 KiB) and no TLS object;
- memory: asyncio's own TLS protocol allocates (and zeroes) a 256 KiB read
  buffer per connection as soon as the connection is accepted, so every
  pending handshake and every established TLS connection held more than
  300 KiB. Here the socket's reads arrive as ``data_received`` chunks and
  go straight into the incoming BIO, which keeps no more than a partial TLS
  record between reads: a pending handshake costs what OpenSSL allocates
  for it, and an established connection a twelfth of before (the
  measurements are in the broker guide).

The MQTT protocol does not see the difference: it gets ``connection_made``
once the handshake is done (``get_extra_info("peercert")`` works as with
asyncio's transport), ``data_received`` with plaintext, ``eof_received``
for a TLS close_notify or a TCP EOF, and the flow control of the socket's
transport, whose buffer holds the encrypted output.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl as _ssl
from collections.abc import Callable
from typing import Any, Protocol

from ._asyncio_peers import PeerOwner, _Peer
from ._listener import Listener
from ._server_common import READ_SIZE, peer_name
from ._tls_gate import HandshakeGate, first_record_size, handshake_failure


class TlsOwner(PeerOwner, Protocol):
    """What a :class:`TlsLayer` reads of its server (the asyncio
    ``BrokerServer``), named here so that this module does not import it."""

    tls_handshake_timeout: float
    _closing: bool
    _loop: asyncio.AbstractEventLoop | None
    _tls_gate: HandshakeGate
    _handshaking: set[TlsLayer]

    def _now(self) -> float: ...


__all__ = ["TlsLayer", "protocol_factory"]

#: Where a :class:`TlsLayer` is: refused before any TLS state; waiting for
#: the client's first TLS record; in the handshake; the handshake failed (its
#: alert is being sent); open to MQTT; open, then closed or aborted from this
#: side; the socket is gone.
_REFUSED, _WAITING, _HANDSHAKING, _FAILED, _OPEN, _CLOSING, _CLOSED = range(7)


def protocol_factory(server: TlsOwner, listener: Listener) -> Callable[[], asyncio.Protocol]:
    """What each connection to ``listener`` gets: a :class:`._asyncio_peers._Peer`
    (which speaks WebSocket too, on a WebSocket listener), under a
    :class:`TlsLayer` if the listener has TLS."""

    def app() -> asyncio.Protocol:
        return _Peer(server, listener)

    if listener.ssl is None:
        return app

    def tls() -> asyncio.Protocol:
        return TlsLayer(server, listener, app)

    return tls


class TlsLayer(asyncio.Protocol, asyncio.Transport):
    """One connection to a TLS listener: the handshake, then TLS records both ways."""

    __slots__ = (
        "_app",
        "_app_factory",
        "_error",
        "_hello",
        "_incoming",
        "_listener",
        "_outgoing",
        "_peer",
        "_raw",
        "_server",
        "_started",
        "_state",
        "_timer",
        "_tls",
    )

    def __init__(
        self,
        server: TlsOwner,
        listener: Listener,
        app_factory: Callable[[], asyncio.Protocol],
    ) -> None:
        super().__init__()
        self._server = server
        self._listener = listener
        self._app_factory = app_factory
        self._app: asyncio.Protocol | None = None
        self._raw: asyncio.Transport | None = None
        self._tls: _ssl.SSLObject | None = None
        self._incoming: _ssl.MemoryBIO | None = None
        self._outgoing: _ssl.MemoryBIO | None = None
        self._state = _WAITING
        #: What arrived before the first TLS record was whole.
        self._hello = bytearray()
        #: Admitted by HandshakeGate.start: the TLS state exists.
        self._started = False
        self._timer: asyncio.TimerHandle | None = None
        self._peer = "unknown"
        #: The TLS error that ended the connection, for connection_lost.
        self._error: Exception | None = None

    # -- from the socket's transport ------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._raw = transport
        server = self._server
        self._peer = peer_name(self._listener, transport.get_extra_info("peername"))
        now = server._now()
        if server._closing or not server._tls_gate.admit(now, self._peer):
            # Nothing of TLS exists yet: an abort is all this connection costs.
            self._state = _REFUSED
            transport.abort()
            return
        server._handshaking.add(self)
        loop = server._loop
        assert loop is not None
        self._timer = loop.call_later(server.tls_handshake_timeout, self._handshake_overdue)

    def data_received(self, data: bytes) -> None:
        if self._state == _OPEN:
            self._receive_records(data)
        elif self._state == _HANDSHAKING:
            self._handshake(data)
        elif self._state == _WAITING:
            self._wait_for_record(data)

    def eof_received(self) -> bool:
        if self._state == _OPEN and self._app is not None:
            # A TCP EOF without close_notify: the MQTT layer decides (it
            # closes; everything the broker still had to say was written).
            return bool(self._app.eof_received())
        if self._state in (_WAITING, _HANDSHAKING):
            self._handshake_failed(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        state = self._state
        self._state = _CLOSED
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._server._handshaking.discard(self)
        if state in (_WAITING, _HANDSHAKING, _FAILED):
            # The slot is held until the socket is gone, its alert sent.
            self._server._tls_gate.release(self._started)
        # OpenSSL's buffers go now, not when the last reference does.
        self._tls = self._incoming = self._outgoing = None
        self._hello.clear()
        app = self._app
        if app is not None:
            self._app = None
            app.connection_lost(exc if exc is not None else self._error)

    def pause_writing(self) -> None:
        if self._app is not None:
            self._app.pause_writing()

    def resume_writing(self) -> None:
        if self._app is not None:
            self._app.resume_writing()

    # -- the handshake ----------------------------------------------------------------

    def _wait_for_record(self, data: bytes) -> None:
        """Hold the bytes until the first TLS record is whole (at most 16 KiB),
        then start the handshake if the gate admits it."""
        hello = self._hello
        hello += data
        size = first_record_size(hello)
        if size is None:
            self._handshake_failed("not a TLS handshake")
            return
        if len(hello) < size:
            return
        server = self._server
        if not server._tls_gate.start(server._now(), self._peer):
            self._state = _REFUSED
            assert self._raw is not None
            self._raw.abort()
            return
        self._started = True
        self._state = _HANDSHAKING
        self._hello = bytearray()
        self._incoming, self._outgoing = _ssl.MemoryBIO(), _ssl.MemoryBIO()
        context = self._listener.ssl
        assert context is not None
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._handshake(bytes(hello))

    def _handshake(self, data: bytes) -> None:
        tls, incoming = self._tls, self._incoming
        assert tls is not None and incoming is not None
        incoming.write(data)
        try:
            tls.do_handshake()
        except _ssl.SSLWantReadError:
            self._send_records()
            return
        except (_ssl.SSLError, ValueError) as exc:
            # The alert that says why (a certificate required, say) goes out;
            # OpenSSL's reason (CERTIFICATE_VERIFY_FAILED...) names it.
            self._send_records()
            self._handshake_failed(handshake_failure(exc) or str(exc))
            return
        self._send_records()
        self._handshake_done()

    def _handshake_done(self) -> None:
        server = self._server
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        server._handshaking.discard(self)
        server._tls_gate.succeeded()
        self._started = False
        self._state = _OPEN
        app = self._app = self._app_factory()
        app.connection_made(self)
        # Application data that came with the client's Finished.
        if self._state == _OPEN:
            self._receive_records(b"")

    def _handshake_failed(self, why: str | None) -> None:
        self._state = _FAILED
        self._server._tls_gate.failed(self._server._now(), self._peer, why)
        raw = self._raw
        assert raw is not None
        # Close after the alert; the handshake timer, still running, aborts
        # a peer that does not take it.
        raw.close()

    def _handshake_overdue(self) -> None:
        self._timer = None
        if self._state in (_WAITING, _HANDSHAKING, _FAILED):
            if self._state != _FAILED:
                self._server._tls_gate.timed_out(self._server._now(), self._peer)
            assert self._raw is not None
            self._raw.abort()

    # -- records ----------------------------------------------------------------------

    def _receive_records(self, data: bytes) -> None:
        tls, incoming, app = self._tls, self._incoming, self._app
        assert tls is not None and incoming is not None and app is not None
        if data:
            incoming.write(data)
        # Everything that arrived is decrypted now: the BIO keeps at most
        # part of one record between reads.
        while self._state == _OPEN:
            try:
                chunk = tls.read(READ_SIZE)
            except _ssl.SSLWantReadError:
                break
            except _ssl.SSLZeroReturnError:
                # close_notify: the end of the client's stream.
                if not app.eof_received():
                    self.close()
                return
            except _ssl.SSLError as exc:
                self._fatal(exc)
                return
            if not chunk:
                break
            app.data_received(chunk)
        # A read may have produced records to send (a TLS 1.3 key update).
        self._send_records()

    def _send_records(self) -> None:
        outgoing, raw = self._outgoing, self._raw
        if outgoing is not None and outgoing.pending and raw is not None:
            raw.write(outgoing.read())

    def _fatal(self, exc: Exception) -> None:
        self._error = exc
        self._state = _CLOSING
        assert self._raw is not None
        self._raw.abort()

    # -- to the MQTT protocol (asyncio.Transport) -----------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        tls = self._tls
        if self._state != _OPEN or tls is None:
            return
        view = memoryview(data)
        try:
            # The outgoing BIO takes everything; a partial count means one
            # more record to go.
            while view:
                view = view[tls.write(view) :]
        except _ssl.SSLError as exc:
            self._fatal(exc)
            return
        self._send_records()

    def close(self) -> None:
        """close_notify, then close the socket once its buffer is written."""
        if self._state != _OPEN:
            if self._raw is not None and self._state != _CLOSED:
                self._raw.close()
            return
        self._state = _CLOSING
        assert self._tls is not None and self._raw is not None
        # Sends close_notify, then raises SSLWantReadError: the client's
        # close_notify is not awaited, MQTT has nothing left to say.
        with contextlib.suppress(_ssl.SSLError):
            self._tls.unwrap()
        self._send_records()
        self._raw.close()

    def abort(self) -> None:
        if self._state == _OPEN:
            self._state = _CLOSING
        if self._raw is not None:
            self._raw.abort()

    def is_closing(self) -> bool:
        return self._state != _OPEN or self._raw is None or self._raw.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        tls = self._tls
        if name == "peercert":
            return tls.getpeercert() if tls is not None else default
        if name == "ssl_object":
            return tls if tls is not None else default
        if name == "cipher":
            return tls.cipher() if tls is not None else default
        if name == "sslcontext":
            return self._listener.ssl
        return self._raw.get_extra_info(name, default) if self._raw is not None else default

    def pause_reading(self) -> None:
        if self._raw is not None:
            self._raw.pause_reading()

    def resume_reading(self) -> None:
        if self._raw is not None:
            self._raw.resume_reading()

    def is_reading(self) -> bool:
        return self._raw is not None and self._raw.is_reading()

    def get_write_buffer_size(self) -> int:
        """The encrypted bytes not yet written to the socket."""
        return self._raw.get_write_buffer_size() if self._raw is not None else 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if self._raw is not None:
            self._raw.set_write_buffer_limits(high, low)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        assert self._raw is not None
        return self._raw.get_write_buffer_limits()

    def can_write_eof(self) -> bool:
        return False

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.Protocol)
        self._app = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self._app is not None
        return self._app
