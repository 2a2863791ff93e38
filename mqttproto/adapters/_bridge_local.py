"""A bridge's connection to its own broker, without a socket: :class:`LocalLink`.

To the server's :class:`._driver.Driver` it is one more :class:`._driver.Peer`,
opened, fed and closed exactly as a socket connection is, so the broker
serves the bridge through its ordinary server role: a session with
subscriptions, a bounded queue while the bridge is away (durable under
``--persist``), ACLs, ``$SYS`` counters. Where a socket would carry the
bytes, the link hands them to a :class:`~mqttproto.client.ClientConnection`
in the same process, and what that client sends to
:meth:`._driver.Driver.received`.

Bytes the driver writes are delivered on the next loop iteration
(``call_soon``), never inside the driver's pump, so nothing re-enters the
broker while it is writing; a close (:meth:`finish`, :meth:`abort`) is
reported to :meth:`._driver.Driver.lost` the same way, as asyncio reports
``connection_lost``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable

from ..client import ClientConnection
from ..errors import RemoteProtocolError
from ._driver import Driver, Peer
from ._listener import Listener

__all__ = ["LocalLink"]

#: What the driver sees as the link's listener: a plain one (no TLS, no
#: WebSocket, no certificate identity).
_IN_PROCESS = Listener(host=None, port=0)


class LocalLink(Peer):
    """One in-process connection of ``client`` to the broker ``driver`` serves.

    :param on_input: called after the client received bytes (or its end),
        for the bridge to read the client's events and answer.
    :param on_gone: called once the driver has been told the link is gone.
    """

    __slots__ = (
        "_detached",
        "_driver",
        "_gone",
        "_inbox",
        "_loop",
        "_on_gone",
        "_on_input",
        "_scheduled",
        "client",
    )

    def __init__(
        self,
        driver: Driver,
        loop: asyncio.AbstractEventLoop,
        client: ClientConnection,
        name: str,
        *,
        on_input: Callable[[], None],
        on_gone: Callable[[], None],
    ) -> None:
        super().__init__(_IN_PROCESS, f"bridge:{name}")
        self.client = client
        self._driver = driver
        self._loop = loop
        self._on_input = on_input
        self._on_gone = on_gone
        self._inbox: deque[bytes] = deque()
        self._scheduled = False
        #: finish() or abort() was called: the driver hears of it once.
        self._gone = False
        #: close() was called: input is thrown away.
        self._detached = False

    @property
    def is_open(self) -> bool:
        """Opened in the broker and not closed since."""
        return self.conn >= 0 and not self._gone and not self.closing

    def open(self, identity: str | None) -> bool:
        """Open the connection in the broker (False: refused, logged by the driver)."""
        return self._driver.open(self, self._loop.time(), None, identity)

    def send(self) -> None:
        """Hand what the client has to send to the broker."""
        now = self._loop.time()
        data = self.client.data_to_send(now)
        if data and self.is_open:
            self._driver.received(self, data, now)

    def close(self) -> None:
        """End the connection from the client's side, as a closed socket does:
        what the client still had to say, then the end of its stream."""
        if not self.is_open:
            return
        self.send()
        # Nothing the broker says after this concerns the client any more.
        self._detached = True
        self._driver.eof(self, self._loop.time(), "bridge link closed")

    # -- the driver's I/O -------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._gone or self._detached:
            return
        self._inbox.append(data)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._deliver)

    def _deliver(self) -> None:
        self._scheduled = False
        inbox = self._inbox
        if not inbox or self._detached:
            inbox.clear()
            return
        data = b"".join(inbox)
        inbox.clear()
        with contextlib.suppress(RemoteProtocolError):
            # (On a protocol error the client queued its goodbye: the bridge
            # sends it and ends the link.)
            self.client.receive_data(data, self._loop.time())
        self._on_input()

    def unsent(self) -> int:
        return sum(map(len, self._inbox))

    def pause_reading(self) -> None:
        """Nothing to stop: the bridge's input is bounded by the windows of
        both links (the broker's in-flight window, the client's Receive
        Maximum)."""

    def resume_reading(self) -> None:
        """Nothing was stopped (see :meth:`pause_reading`)."""

    def finish(self) -> None:
        if not self._gone:
            self._gone = True
            self._loop.call_soon(self._lost, True)

    def abort(self) -> None:
        if not self._gone:
            self._gone = True
            self._inbox.clear()
            self._loop.call_soon(self._lost, False)

    def _lost(self, graceful: bool) -> None:
        if graceful:
            self._deliver()
        now = self._loop.time()
        client = self.client
        if not self._detached and not client.closed:
            client.receive_eof(now)
        self._driver.lost(self, now, "bridge link closed")
        if not self._detached:
            self._on_input()
        self._on_gone()
