"""Plain TCP, WebSocket and Unix socket connections of the asyncio
:class:`~mqttproto.adapters.asyncio.BrokerServer`, without asyncio transports.

An idle broker connection is most of what a broker holds, and asyncio's
socket transport is a large part of it: the transport object and its dict,
its extra-info dict (the socket wrapper, both addresses), a Handle, a
context and a selector key in the loop for its reader, a Python socket
object, about 1.3 KiB in all before the MQTT state. Here a connection is
one :class:`_TcpPeer` (a slotted :class:`._driver.Peer`) and its file
descriptor, and nothing else while it is idle:

- one ``epoll`` object per server (:class:`TcpMux`) watches every such
  connection, and its own descriptor is the only one the event loop
  watches for them (``loop.add_reader``): the loop says *some* connection
  is ready, the mux asks ``epoll`` which (level-triggered, at most
  :data:`EVENTS_PER_WAKE` per loop iteration, so that a busy server stays
  fair to the loop's other callbacks), and calls the peer;
- reads go into one buffer the mux shares (``os.readv``), and only the
  bytes read are copied out for the broker: an idle connection has no read
  buffer;
- writes go straight to the socket (``os.write``); only what the socket
  does not take is kept, in a buffer made then and dropped once it is
  written, and only then is the connection watched for writability.

It keeps what asyncio's transport gave the driver, with asyncio's numbers:
above :data:`WRITE_HIGH` unsent bytes a connection is congested (the driver
stops reading from it) until it is back at :data:`WRITE_LOW`; a peer's EOF
is reported (:meth:`._driver.Driver.eof`), after which the connection
closes once its output is written; :meth:`_TcpPeer.half_close` sends a FIN
after the last bytes and goes on reading; a failed read or write (a reset,
a broken pipe) closes the connection, and :meth:`._driver.Driver.lost`
hears of every end on the next loop iteration, as from asyncio's
``connection_lost``.

TLS listeners keep asyncio's transports (under :class:`._asyncio_tls.TlsLayer`),
and so does every listener where there is no ``select.epoll`` (not Linux):
:data:`AVAILABLE`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import select
import socket
from collections.abc import Callable
from typing import Any

from ._asyncio_peers import PeerOwner
from ._driver import Peer
from ._listener import Listener
from ._server_common import READ_SIZE, peer_name

__all__ = ["AVAILABLE", "EVENTS_PER_WAKE", "WRITE_HIGH", "WRITE_LOW", "TcpListening", "TcpMux"]

logger = logging.getLogger("mqttproto.broker")

#: Whether this platform has ``epoll`` (Linux): without it every listener
#: is served by asyncio's transports.
AVAILABLE = hasattr(select, "epoll")

#: Unsent bytes above which a connection is congested, and the level it
#: must drain to before it is not (asyncio's default write buffer limits).
WRITE_HIGH = 64 * 1024
WRITE_LOW = 16 * 1024

#: Connections served per loop iteration, at most (the rest wait for the next).
EVENTS_PER_WAKE = 512

#: Seconds a listener stops accepting after running out of file descriptors
#: (asyncio's ACCEPT_RETRY_DELAY).
ACCEPT_RETRY_DELAY = 1.0

_IN = getattr(select, "EPOLLIN", 1)
_OUT = getattr(select, "EPOLLOUT", 4)
_TROUBLE = getattr(select, "EPOLLERR", 8) | getattr(select, "EPOLLHUP", 16)

# _TcpPeer.flags
_FINISHING = 1  # close once the output is written
_HALF_CLOSING = 2  # shut the write side once the output is written
_WRITE_SHUT = 4  # the FIN is sent: nothing more is written
_EOF = 8  # the peer's EOF was read: nothing more is read


class TcpMux:
    """The connections of one server that are not TLS, on one ``epoll``."""

    def __init__(self, owner: PeerOwner, loop: asyncio.AbstractEventLoop) -> None:
        self._owner = owner
        self._loop = loop
        self._epoll = select.epoll()
        #: The peers by file descriptor (descriptors are small and dense).
        self._by_fd: list[_TcpPeer | None] = []
        self._buffer = bytearray(READ_SIZE)
        self._buffers = [self._buffer]
        self._view = memoryview(self._buffer)
        loop.add_reader(self._epoll.fileno(), self._ready)

    def close(self) -> None:
        """Stop watching (the server is closed; its connections are gone)."""
        if not self._epoll.closed:
            self._loop.remove_reader(self._epoll.fileno())
            self._epoll.close()

    def listen(self, listener: Listener, sockets: list[socket.socket]) -> TcpListening:
        """Accept connections to ``listener`` on its listening ``sockets``."""
        listening = TcpListening(self._loop, listener, sockets, self._accepted)
        listening.start()
        return listening

    # -- connections in and out --------------------------------------------------------

    def _accepted(self, listener: Listener, sock: socket.socket, address: Any) -> None:
        if listener.transport != "unix":
            # As asyncio does; a socket reset already fails its first read.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        peer = _TcpPeer(self, listener, sock.detach(), peer_name(listener, address))
        owner = self._owner
        if owner._closing or not owner._driver.open(peer, owner._now(), address):
            # Accepted in the instant the listener was closing, or refused.
            peer.abort()
            return
        fd = peer.fd
        by_fd = self._by_fd
        if fd >= len(by_fd):
            by_fd.extend([None] * (fd + 1 - len(by_fd)))
        by_fd[fd] = peer
        peer.watch()

    def _watch(self, fd: int, old: int, new: int) -> None:
        if not old:
            self._epoll.register(fd, new)
        elif new:
            self._epoll.modify(fd, new)
        else:
            self._epoll.unregister(fd)

    def _forget(self, peer: _TcpPeer, fd: int) -> None:
        """``peer``'s descriptor ``fd`` is about to be closed."""
        if peer.mask:
            peer.mask = 0
            # (ValueError: the server's epoll is closed already.)
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(fd)
        by_fd = self._by_fd
        if fd < len(by_fd) and by_fd[fd] is peer:
            by_fd[fd] = None

    def _gone(self, peer: _TcpPeer, exc: Exception | None) -> None:
        """The end of ``peer``, as asyncio's ``connection_lost`` says it."""
        owner = self._owner
        reason = f"connection lost: {exc}" if exc is not None else "peer closed the connection"
        owner._driver.lost(peer, owner._now(), reason)
        owner._peer_gone()

    # -- the loop's callback -------------------------------------------------------------

    def _ready(self) -> None:
        try:
            events = self._epoll.poll(0, EVENTS_PER_WAKE)
        except (OSError, ValueError):
            return  # closed (close() removes the reader, which cancels this too)
        now = self._owner._now()
        by_fd = self._by_fd
        for fd, mask in events:
            peer = by_fd[fd] if fd < len(by_fd) else None
            if peer is not None:
                peer.ready(mask, now)


class _TcpPeer(Peer):
    """One connection: a file descriptor on its server's :class:`TcpMux`."""

    __slots__ = ("fd", "flags", "mask", "mux", "out")

    def __init__(self, mux: TcpMux, listener: Listener, fd: int, peer: str) -> None:
        super().__init__(listener, peer)
        self.mux = mux
        #: The socket's descriptor; -1 once closed.
        self.fd = fd
        #: What the socket did not take yet; None when everything went.
        self.out: bytearray | None = None
        #: What the mux's epoll watches for (0: not registered).
        self.mask = 0
        #: _FINISHING, _HALF_CLOSING, _WRITE_SHUT, _EOF.
        self.flags = 0

    # -- the driver's I/O ---------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.fd < 0 or self.flags & (_FINISHING | _HALF_CLOSING | _WRITE_SHUT):
            return
        out = self.out
        if out is not None:
            out += data
            return
        try:
            sent = os.write(self.fd, data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._close(exc)
            return
        if sent < len(data):
            self.out = bytearray(memoryview(data)[sent:])
            self.watch()

    def unsent(self) -> int:
        out = self.out
        return 0 if out is None else len(out)

    def congested(self, unsent: int) -> bool:
        # asyncio's pause_writing/resume_writing, with its default limits.
        return unsent > (WRITE_LOW if self.output_congested else WRITE_HIGH)

    def pause_reading(self) -> None:
        self.watch()

    def resume_reading(self) -> None:
        self.watch()

    def half_close(self) -> None:
        if self.fd < 0 or self.flags & (_FINISHING | _HALF_CLOSING | _WRITE_SHUT):
            return
        if self.out is None:
            self._shut_write()
        else:
            self.flags |= _HALF_CLOSING

    def finish(self) -> None:
        if self.fd < 0:
            return
        self.flags |= _FINISHING
        if self.out is None:
            self._close(None)
        else:
            self.watch()  # no more reading, as asyncio's close()

    def abort(self) -> None:
        self._close(None)

    # -- the mux's ----------------------------------------------------------------------

    def watch(self) -> None:
        """Have the mux watch for what the connection waits for now."""
        fd = self.fd
        if fd < 0:
            return
        mask = 0 if self.paused or self.flags & (_FINISHING | _EOF) else _IN
        if self.out is not None:
            mask |= _OUT
        old = self.mask
        if mask != old:
            self.mask = mask
            self.mux._watch(fd, old, mask)

    def ready(self, events: int, now: float) -> None:
        """The mux's epoll says the socket is ready for ``events``."""
        if self.out is not None and events & (_OUT | _TROUBLE):
            self._flush(now)
        if self.fd >= 0 and self.mask & _IN and events & (_IN | _TROUBLE):
            self._read(now)

    def _read(self, now: float) -> None:
        mux = self.mux
        try:
            size = os.readv(self.fd, mux._buffers)
        except BlockingIOError:
            return
        except OSError as exc:
            self._close(exc)
            return
        driver = mux._owner._driver
        if not size:
            # asyncio's eof_received, then close() once the output is written.
            self.flags |= _EOF
            self.watch()
            driver.eof(self, now)
            self.finish()
            return
        driver.received(self, bytes(mux._view[:size]), now)

    def _flush(self, now: float) -> None:
        out = self.out
        assert out is not None
        try:
            sent = os.write(self.fd, out)
        except BlockingIOError:
            return
        except OSError as exc:
            self._close(exc)
            return
        del out[:sent]
        if not out:
            self.out = None
            if self.flags & _FINISHING:
                self._close(None)
                return
            if self.flags & _HALF_CLOSING:
                self._shut_write()
                if self.fd < 0:
                    return
            self.watch()
        if self.output_congested and len(out) <= WRITE_LOW:
            # asyncio's resume_writing: the driver reads from it again.
            self.mux._owner._driver.output_changed(self, now)

    def _shut_write(self) -> None:
        """The FIN, after the last bytes; reading goes on (the drain)."""
        self.flags = (self.flags | _WRITE_SHUT) & ~_HALF_CLOSING
        sock = socket.socket(fileno=self.fd)
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            # The peer is gone already.
            self._close(exc)
        finally:
            sock.detach()

    def _close(self, exc: Exception | None) -> None:
        """Close the socket now; the driver hears of it on the next iteration."""
        fd = self.fd
        if fd < 0:
            return
        self.fd = -1
        self.out = None
        mux = self.mux
        mux._forget(self, fd)
        try:
            os.close(fd)
        except OSError as error:
            exc = exc or error
        mux._loop.call_soon(mux._gone, self, exc)


class TcpListening:
    """The listening sockets of one listener on a :class:`TcpMux` (what
    ``asyncio.Server`` is for the other listeners): each on the loop, its
    connections handed to ``accepted``."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        listener: Listener,
        sockets: list[socket.socket],
        accepted: Callable[[Listener, socket.socket, Any], None],
    ) -> None:
        self._loop = loop
        self._listener = listener
        self._sockets = sockets
        self._accepted = accepted
        #: Not closed (accepting, or pausing after EMFILE).
        self._serving = False
        #: Whether the loop watches the sockets.
        self._watching = False
        self._retry: asyncio.TimerHandle | None = None
        #: Connections accepted per wake-up, as asyncio: the accept queue.
        self._per_wake = 100 if listener.backlog is None else listener.backlog

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return tuple(self._sockets)

    def is_serving(self) -> bool:
        return self._serving

    def start(self) -> None:
        self._serving = True
        self._resume()

    def close(self) -> None:
        """Stop listening (the connections accepted stay)."""
        self._serving = False
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self._unwatch()
        for sock in self._sockets:
            sock.close()
        self._sockets = []

    async def wait_closed(self) -> None:
        """Nothing to wait for: closing is immediate."""

    def _accept(self, sock: socket.socket) -> None:
        for _ in range(self._per_wake):
            try:
                client, address = sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Out of descriptors: pause, or this would spin.
                    logger.error(
                        "accept() failed on %s: %s; retrying in %.0f s",
                        self._listener.kind,
                        exc,
                        ACCEPT_RETRY_DELAY,
                    )
                    self._pause()
                else:
                    logger.warning("accept() failed on %s: %s", self._listener.kind, exc)
                return
            self._accepted(self._listener, client, address)

    def _pause(self) -> None:
        self._unwatch()
        if self._retry is None:
            self._retry = self._loop.call_later(ACCEPT_RETRY_DELAY, self._resume)

    def _resume(self) -> None:
        self._retry = None
        if self._serving and not self._watching:
            self._watching = True
            for sock in self._sockets:
                self._loop.add_reader(sock.fileno(), self._accept, sock)

    def _unwatch(self) -> None:
        if self._watching:
            self._watching = False
            for sock in self._sockets:
                self._loop.remove_reader(sock.fileno())
