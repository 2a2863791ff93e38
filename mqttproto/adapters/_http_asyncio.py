"""The broker's HTTP listener on asyncio: h11 (sans-IO HTTP/1.1) on the
loop of a :class:`~mqttproto.adapters.asyncio.BrokerServer`, answering with
:class:`._http_app.HttpApp`.

It runs on the broker server's loop, so the broker is only ever touched
from one thread. Every request is bounded:

- its size (request line, headers and any body, which no endpoint reads)
  by ``max_request_bytes`` (431 past it), and its header count by
  ``max_headers`` (431); a declared body larger than that is a 413;
- its time by ``request_timeout``: a connection that has not sent a whole
  request by then is closed (slowloris);
- the connections at once by ``max_connections``: one past it is closed at once.

One request per connection (``Connection: close``): the status page's
polls are two small requests every two seconds, and nothing here needs
keep-alive.

h11 is the optional extra ``http``: it is imported when a listener starts.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from ._http_app import HttpApp, HttpResponse

if TYPE_CHECKING:
    from ._asyncio_server import BrokerServer

__all__ = ["HttpServer", "start_http"]

logger = logging.getLogger("mqttproto.http")

DEFAULT_MAX_REQUEST_BYTES = 16 * 1024
DEFAULT_MAX_HEADERS = 64
DEFAULT_REQUEST_TIMEOUT = 10.0
DEFAULT_MAX_CONNECTIONS = 64


def require_h11() -> Any:
    """The h11 module.

    :raises ImportError: it is not installed (the message names the extra).
    """
    try:
        import h11
    except ImportError:
        raise ImportError("the HTTP listener needs h11: pip install 'mqttproto[http]'") from None
    return h11


class _HttpProtocol(asyncio.Protocol):
    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.h11 = server.h11
        self.conn = self.h11.Connection(
            self.h11.SERVER, max_incomplete_event_size=server.max_request_bytes
        )
        self.transport: asyncio.Transport | None = None
        self.peer = "unknown"
        self.timer: asyncio.TimerHandle | None = None
        self.received = 0
        self.answered = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peername = transport.get_extra_info("peername")
        if isinstance(peername, tuple) and len(peername) >= 2:
            self.peer = f"{peername[0]}:{peername[1]}"
        server = self.server
        if len(server.connections) >= server.max_connections:
            logger.warning(
                "HTTP %s: refused, %d connections open", self.peer, server.max_connections
            )
            transport.abort()
            return
        server.connections.add(self)
        self.timer = asyncio.get_running_loop().call_later(server.request_timeout, self._timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _timed_out(self) -> None:
        self.timer = None
        if not self.answered and self.transport is not None:
            logger.info(
                "HTTP %s: no whole request in %gs, closed", self.peer, self.server.request_timeout
            )
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.answered:
            return
        h11 = self.h11
        self.received += len(data)
        if self.received > self.server.max_request_bytes:
            # No endpoint takes a body: all of it is the request's head.
            # (h11's own bound only holds while the head is incomplete.)
            self._answer("GET", HttpResponse(431, "text/plain", b"request too large\n"))
            return
        try:
            self.conn.receive_data(data)
            while not self.answered:
                event = self.conn.next_event()
                if event is h11.NEED_DATA:
                    return
                if isinstance(event, h11.Request):
                    self._request(event)
                elif isinstance(event, h11.ConnectionClosed):
                    self._close()
                    return
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint
            logger.info("HTTP %s: bad request: %s", self.peer, exc)
            self._answer("GET", HttpResponse(status, "text/plain", f"{exc}\n".encode()))

    def _request(self, request: Any) -> None:
        server = self.server
        method = request.method.decode("ascii", "replace")
        target = request.target.decode("ascii", "replace")
        headers = list(request.headers)
        if len(headers) > server.max_headers:
            response = HttpResponse(431, "text/plain", b"too many header fields\n")
        else:
            for name, value in headers:
                if name == b"content-length" and int(value) > server.max_request_bytes:
                    response = HttpResponse(413, "text/plain", b"request body too large\n")
                    break
            else:
                try:
                    response = server.app.respond(method, target, headers)
                except Exception:
                    logger.exception("HTTP %s: %s %s failed", self.peer, method, target)
                    response = HttpResponse(500, "text/plain", b"internal error\n")
        logger.debug(
            "HTTP %s: %s %s -> %d", self.peer, method, target.split("?")[0], response.status
        )
        self._answer(method, response)

    def _answer(self, method: str, response: HttpResponse) -> None:
        self.answered = True
        h11 = self.h11
        headers = [
            ("Content-Type", response.content_type),
            ("Content-Length", str(len(response.body))),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            ("Connection", "close"),
            *response.headers,
        ]
        conn = self.conn
        try:
            data = conn.send(h11.Response(status_code=response.status, headers=headers))
            if method != "HEAD":
                data += conn.send(h11.Data(data=response.body))
            data += conn.send(h11.EndOfMessage())
        except h11.LocalProtocolError:
            # The request was too broken for h11 to answer it: just close.
            self._close()
            return
        if self.transport is not None:
            self.transport.write(data)
        self._close()

    def _close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class HttpServer:
    """An HTTP listener serving :class:`._http_app.HttpApp` on the running loop."""

    def __init__(
        self,
        app: HttpApp,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        max_headers: int = DEFAULT_MAX_HEADERS,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self.h11 = require_h11()
        self.app = app
        self.host = host
        self.port = port
        self.max_request_bytes = max_request_bytes
        self.max_headers = max_headers
        self.request_timeout = request_timeout
        self.max_connections = max_connections
        self.connections: set[_HttpProtocol] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen; :attr:`port` is then the bound port.

        :raises OSError: the address cannot be bound.
        """
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _HttpProtocol(self), self.host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def addresses(self) -> list[tuple[str, int]]:
        server = self._server
        if server is None:
            return []
        return [sock.getsockname()[:2] for sock in server.sockets]

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for protocol in list(self.connections):
            if protocol.transport is not None:
                protocol.transport.abort()
        await server.wait_closed()


async def start_http(
    server: BrokerServer,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    token: str | None = None,
    token_metrics: bool = False,
    **limits: Any,
) -> HttpServer:
    """Serve ``server``'s broker over HTTP on its loop; returns the started listener.

    :raises ImportError: h11 is not installed.
    :raises OSError: the address cannot be bound.
    """
    loop = asyncio.get_running_loop()
    app = HttpApp(
        server.broker,
        clock=loop.time,
        changed=server._pump_soon,
        token=token,
        token_metrics=token_metrics,
        bridges=lambda: server.bridges,
    )
    http = HttpServer(app, host=host, port=port, **limits)
    await http.start()
    return http
