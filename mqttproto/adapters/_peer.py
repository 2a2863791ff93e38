"""What a broker server's connection is to the driver (:class:`Peer`): the
driver's bookkeeping for it, and the I/O each server implements (see
:mod:`._driver`)."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any

from ._listener import Listener

if TYPE_CHECKING:  # without importing wsproto at run time
    from ._websocket_server import ServerWebSocket

__all__ = ["PAUSE_READING_ABOVE", "Peer"]

#: Unsent bytes above which a server stops reading from a connection (unless
#: its transport has its own flow control: see :meth:`Peer.congested`).
PAUSE_READING_ABOVE = 256 * 1024


class Peer(abc.ABC):
    """One connection of a server, as the driver sees it.

    The attributes are the driver's bookkeeping (the server may read them);
    the abstract methods are the server's I/O, which the driver calls.
    """

    __slots__ = (
        "accepted",
        "backlog",
        "close_reason",
        "closing",
        "conn",
        "discarded",
        "listener",
        "output_congested",
        "paused",
        "peer",
        "ws",
    )

    def __init__(self, listener: Listener, peer: str = "unknown") -> None:
        self.listener = listener
        #: ``host:port`` (or ``unix:path``), for the log and the broker.
        self.peer = peer
        #: The broker's connection id, once :meth:`Driver.open` has it.
        self.conn = -1
        #: Whether the first CONNACK has gone out (logged once).
        self.accepted = False
        #: No more input for the broker; the connection is closing or dropped.
        self.closing = False
        #: Why it ends, for the log ("closed: <reason>").
        self.close_reason: str | None = None
        #: Whether the driver asked to stop reading from it: its output is
        #: congested, or its input is held by the budget (not while closing).
        self.paused = False
        #: The client does not take its output (see :meth:`congested`).
        self.output_congested = False
        #: Bytes read and thrown away since it began closing (LINGER_BYTES).
        self.discarded = 0
        #: What Broker.output_backlog was last told.
        self.backlog = 0
        #: The WebSocket between the socket and MQTT, on a WebSocket listener.
        self.ws: ServerWebSocket | None = None

    @abc.abstractmethod
    def write(self, data: bytes) -> None:
        """Send ``data`` (not empty) after everything written before."""

    @abc.abstractmethod
    def unsent(self) -> int:
        """Bytes written and not yet taken by the peer."""

    def congested(self, unsent: int) -> bool:
        """Whether to stop reading until the peer takes its output; ``unsent``
        is :meth:`unsent`. A transport with flow control of its own (asyncio's
        write buffer limits) answers from that instead."""
        return unsent > PAUSE_READING_ABOVE

    @abc.abstractmethod
    def pause_reading(self) -> None:
        """Read nothing more from the peer until :meth:`resume_reading`."""

    @abc.abstractmethod
    def resume_reading(self) -> None:
        """Read from the peer again."""

    @abc.abstractmethod
    def finish(self) -> None:
        """Close once everything written has gone; :meth:`Driver.lost` is to
        follow when it has. May be called more than once."""

    @abc.abstractmethod
    def abort(self) -> None:
        """Close now, dropping what is unsent; :meth:`Driver.lost` is to
        follow (at once or later). May be called more than once."""

    def half_close(self) -> None:
        """Once everything written has gone, shut down the write side (a TCP
        FIN) and go on reading: input still goes to :meth:`Driver.received`
        and its end to :meth:`Driver.eof`, and the connection stays open
        until :meth:`finish` or :meth:`abort`. A transport that cannot
        half-close (TLS) only goes on reading. The default is :meth:`finish`,
        for a server that has no such primitive."""
        self.finish()

    def peercert(self) -> dict[str, Any] | None:
        """The verified client certificate (:meth:`ssl.SSLSocket.getpeercert`), if any."""
        return None
