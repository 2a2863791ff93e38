"""What the three broker servers share around their I/O.

The asyncio, trio and threads servers differ only in how they move bytes.
What they do with the broker is the :class:`._driver.Driver`, which
:class:`ServerBase` makes for each; the rest is here: checking the
constructor's arguments (:func:`broker_and_listeners`), :class:`Endpoint`,
naming peers and endpoints, the log line of a listener, Unix socket files.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import os
import socket
import ssl as _ssl
import stat
from collections.abc import Sequence
from typing import Any

import attrs

from ..auth import Authenticator, Authorizer
from ..broker import Broker
from ..config import BrokerConfig
from ._auth_workers import check_auth_workers
from ._driver import Driver
from ._listener import Listener
from ._server_log import last_packet  # named here too, where it used to live
from ._tls_gate import (
    DEFAULT_MAX_TLS_HANDSHAKES,
    DEFAULT_TLS_HANDSHAKE_TIMEOUT,
    HandshakeGate,
    TlsHandshakeStats,
)

__all__ = [
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_MAX_BUFFERED_OUTPUT",
    "DEFAULT_MAX_TLS_HANDSHAKES",
    "DEFAULT_TLS_HANDSHAKE_TIMEOUT",
    "READ_SIZE",
    "Endpoint",
    "ServerBase",
    "broker_and_listeners",
    "endpoint_of",
    "first_address",
    "format_peer",
    "last_packet",
    "listening_sockets",
    "peer_name",
    "port_of",
    "remove_stale_socket",
    "unix_listening_socket",
]

logger = logging.getLogger("mqttproto.broker")

#: Bytes of unsent output a connection may have before it is dropped as a
#: slow consumer (per connection). Above the core's default
#: ``max_unsent_bytes`` plus a largest packet, so that with the defaults the
#: core's policy (QoS 0 dropped, QoS 1/2 queued) holds a slow reader first
#: and the drop is only a last resort.
DEFAULT_MAX_BUFFERED_OUTPUT = 32 * 1024 * 1024

#: Seconds a connection closed by the broker (or by shutdown) may take to
#: send its last bytes before it is aborted.
DEFAULT_CLOSE_TIMEOUT = 5.0


def broker_and_listeners(
    broker: Broker | None,
    *,
    host: str | list[str] | None,
    port: int,
    config: BrokerConfig | None,
    authenticator: Authenticator | None,
    authorizer: Authorizer | None,
    ssl: _ssl.SSLContext | None,
    listeners: Sequence[Listener] | None,
    max_buffered_output: int,
    close_timeout: float,
    tls_handshake_timeout: float = DEFAULT_TLS_HANDSHAKE_TIMEOUT,
    max_tls_handshakes: int = DEFAULT_MAX_TLS_HANDSHAKES,
) -> tuple[Broker, tuple[Listener, ...]]:
    """Check a server constructor's arguments; the broker and listeners to serve.

    :raises ValueError: a broker *and* its config, authenticator or
        authorizer; ``ssl`` next to ``listeners``; no listeners; a limit
        that is not positive.
    """
    if broker is None:
        broker = Broker(config, authenticator=authenticator, authorizer=authorizer)
    elif config is not None or authenticator is not None or authorizer is not None:
        raise ValueError("pass a broker or its config/authenticator/authorizer, not both")
    if max_buffered_output < 1:
        raise ValueError("max_buffered_output must be positive")
    if close_timeout <= 0:
        raise ValueError("close_timeout must be positive")
    if not tls_handshake_timeout > 0:
        raise ValueError("tls_handshake_timeout must be positive")
    if max_tls_handshakes < 1:
        raise ValueError("max_tls_handshakes must be positive")
    if listeners is None:
        listeners = [Listener(host=host, port=port, ssl=ssl)]
    elif ssl is not None:
        raise ValueError("pass ssl in each Listener, not next to listeners")
    elif not listeners:
        raise ValueError("listeners must not be empty")
    return broker, tuple(listeners)


def format_peer(address: Any) -> str:
    """``host:port`` (``[v6]:port``) of a socket address, else its text."""
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address) if address else "unknown"


def peer_name(listener: Listener, address: Any) -> str:
    """How a connection is named in the log and to the broker: ``host:port``,
    or ``unix:<path>`` for every client of a Unix socket listener."""
    if listener.transport == "unix":
        return f"unix:{listener.path}"
    return format_peer(address)


#: Bytes asked of a socket or stream per read.
READ_SIZE = 65536


@attrs.frozen
class Endpoint:
    """Where a started broker server listens: one per listening socket.

    :ivar listener: the :class:`Listener` it belongs to.
    :ivar address: ``(host, port)`` for TCP and WebSocket, else ``None``.
    :ivar path: the socket file of a Unix listener, else ``None``.
    """

    listener: Listener
    address: tuple[str, int] | None
    path: str | None = None

    @property
    def port(self) -> int | None:
        return None if self.address is None else self.address[1]

    def __str__(self) -> str:
        """``127.0.0.1:1883``, ``[::1]:8080`` or the Unix socket's path."""
        if self.address is None:
            return str(self.path)
        return format_peer(self.address)


def port_of(endpoints: Sequence[Endpoint], wanted: Listener) -> int:
    """The port of the first TCP or WebSocket endpoint of ``wanted``."""
    for endpoint in endpoints:
        if endpoint.listener is wanted and endpoint.port is not None:
            return endpoint.port
    raise RuntimeError(f"no TCP port is listened on for {wanted!r}")


def first_address(endpoints: Sequence[Endpoint]) -> tuple[str, int]:
    """``(host, port)`` of the first TCP or WebSocket endpoint."""
    for endpoint in endpoints:
        if endpoint.address is not None:
            return endpoint.address
    raise RuntimeError("the server is not listening on TCP")


def endpoint_of(listener: Listener, sock: Any) -> Endpoint:
    """The :class:`Endpoint` of one listening socket (anything with ``getsockname``)."""
    if listener.transport == "unix":
        return Endpoint(listener, None, listener.path)
    name = sock.getsockname()
    return Endpoint(listener, (str(name[0]), int(name[1])))


def remove_stale_socket(path: str) -> None:
    """Remove a socket file left at ``path`` (as asyncio does); other files stay."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)


def unix_listening_socket(path: str, backlog: int | None) -> socket.socket:
    """A bound, listening, non-blocking Unix socket at ``path`` (a stale
    socket file there is replaced)."""
    remove_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(128 if backlog is None else backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def listening_sockets(listener: Listener, *, default_backlog: int) -> list[socket.socket]:
    """Bound, listening, non-blocking sockets for one listener (SO_REUSEADDR,
    IPv6 sockets IPv6-only); ``default_backlog`` when the listener names none."""
    backlog = default_backlog if listener.backlog is None else listener.backlog
    if listener.transport == "unix":
        assert listener.path is not None
        return [unix_listening_socket(listener.path, backlog)]
    hosts = listener.host if isinstance(listener.host, list) else [listener.host]
    infos = []
    for host in hosts:
        for info in socket.getaddrinfo(
            host, listener.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        ):
            if info not in infos:
                infos.append(info)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in infos:
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class ServerBase(abc.ABC):
    """The arguments, the driver and the introspection the asyncio, trio and
    threads servers share.

    The arguments are those of the asyncio
    :class:`mqttproto.adapters.asyncio.BrokerServer`: a broker (or its
    ``config``, ``authenticator`` and ``authorizer``), one TCP listener on
    ``host``/``port`` (TLS with ``ssl``) or several ``listeners``,
    ``max_buffered_output``, ``close_timeout``, ``tls_handshake_timeout``,
    ``max_tls_handshakes`` and ``auth_workers``.

    A subclass says how its loop runs the :class:`._driver.Driver`'s pump:
    :meth:`_pump_soon` and :meth:`_wake_at`.
    """

    def __init__(
        self,
        broker: Broker | None = None,
        *,
        host: str | list[str] | None = "127.0.0.1",
        port: int = 1883,
        config: BrokerConfig | None = None,
        authenticator: Authenticator | None = None,
        authorizer: Authorizer | None = None,
        ssl: _ssl.SSLContext | None = None,
        listeners: Sequence[Listener] | None = None,
        max_buffered_output: int = DEFAULT_MAX_BUFFERED_OUTPUT,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        tls_handshake_timeout: float = DEFAULT_TLS_HANDSHAKE_TIMEOUT,
        max_tls_handshakes: int = DEFAULT_MAX_TLS_HANDSHAKES,
        auth_workers: int | None = None,
    ) -> None:
        #: Worker threads for deferred authentications (password hashes).
        self.auth_workers = check_auth_workers(auth_workers)
        self.broker, self.listeners = broker_and_listeners(
            broker,
            host=host,
            port=port,
            config=config,
            authenticator=authenticator,
            authorizer=authorizer,
            ssl=ssl,
            listeners=listeners,
            max_buffered_output=max_buffered_output,
            close_timeout=close_timeout,
            tls_handshake_timeout=tls_handshake_timeout,
            max_tls_handshakes=max_tls_handshakes,
        )
        self.max_buffered_output = max_buffered_output
        self.close_timeout = close_timeout
        self.tls_handshake_timeout = tls_handshake_timeout
        self.max_tls_handshakes = max_tls_handshakes
        #: Admits, times and counts the TLS handshakes of every TLS listener.
        self._tls_gate = HandshakeGate(
            self.broker, max_handshakes=max_tls_handshakes, timeout=tls_handshake_timeout
        )
        #: Everything between the broker and the sockets that is not I/O.
        self._driver = Driver(
            self.broker,
            max_buffered_output=max_buffered_output,
            close_timeout=close_timeout,
            pump_soon=self._pump_soon,
            wake_at=self._wake_at,
        )
        #: Where the server listens, while it does (set by the subclass).
        self._endpoints: tuple[Endpoint, ...] = ()
        #: Unix socket files this server created: path -> inode, to remove on close.
        self._socket_files: dict[str, int] = {}

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """Every listening socket with its listener (empty unless serving)."""
        return self._endpoints

    @property
    def connection_count(self) -> int:
        """Open connections (including ones still closing)."""
        return self._driver.connection_count

    @property
    def tls_handshakes(self) -> TlsHandshakeStats:
        """Pending TLS handshakes now, and how many were completed, refused
        (closed before a handshake: a bound was reached), timed out or failed."""
        return self._tls_gate.stats()

    def port_of(self, listener: Listener | int = 0) -> int:
        """The port a TCP or WebSocket listener got (the OS's choice for 0).

        :param listener: the :class:`Listener`, or its index in :attr:`listeners`.
        :raises RuntimeError: not listening, or a Unix listener.
        """
        wanted = self.listeners[listener] if isinstance(listener, int) else listener
        return port_of(self.endpoints, wanted)

    @property
    def port(self) -> int:
        """The port of the first TCP or WebSocket endpoint (the OS's choice for 0)."""
        return self.address[1]

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` of the first TCP or WebSocket endpoint."""
        return first_address(self.endpoints)

    def _require_websocket(self) -> None:
        """Check, before listening, that the WebSocket listeners can be served.

        :raises ImportError: a WebSocket listener without ``wsproto`` installed.
        """
        if any(listener.transport == "websocket" for listener in self.listeners):
            try:
                from . import _websocket_server  # noqa: F401
            except ImportError as exc:
                raise ImportError(
                    "a WebSocket listener needs wsproto: pip install 'mqttproto[websocket]'"
                ) from exc

    @staticmethod
    def _announce(listener: Listener, sockets: Sequence[Any]) -> list[Endpoint]:
        """The endpoints of ``listener``'s listening sockets, logged as listening."""
        found = [endpoint_of(listener, sock) for sock in sockets]
        logger.info("listening on %s (%s)", ", ".join(str(e) for e in found), listener.kind)
        return found

    def _remember_socket_file(self, path: str) -> None:
        with contextlib.suppress(OSError):
            self._socket_files[path] = os.stat(path).st_ino

    def _remove_socket_files(self) -> None:
        """Remove the Unix socket files this server made (if still its own)."""
        for path, inode in self._socket_files.items():
            with contextlib.suppress(OSError):
                if os.stat(path).st_ino == inode:
                    os.unlink(path)
        self._socket_files.clear()

    # -- how the subclass runs the driver -------------------------------------------

    @abc.abstractmethod
    def _pump_soon(self) -> None:
        """Have ``self._driver.pump(now)`` called soon on the server's thread."""

    @abc.abstractmethod
    def _wake_at(self, deadline: float | None) -> None:
        """Have ``self._driver.pump(now)`` called at ``deadline`` (None: never)."""
