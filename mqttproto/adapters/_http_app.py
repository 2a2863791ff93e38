"""What the broker's HTTP listener answers, without the I/O: a request
(method, target, headers) in, an :class:`HttpResponse` out.

Endpoints (all JSON but ``/`` and ``/metrics``):

- ``GET /``: the status page (:mod:`._status_page`);
- ``GET /metrics``: the Prometheus text format (:mod:`._metrics`);
- ``GET /api/v1/stats``: the counters the status page draws;
- ``GET /api/v1/sessions``: every session (:meth:`Broker.session_reports`);
- ``GET /api/v1/subscribers?topic=T``: who a message to T would reach now;
- ``GET /api/v1/retained?filter=F``: retained topics and sizes, never payloads;
- ``GET /api/v1/bridges``: each bridge's state and counters;
- ``DELETE /api/v1/sessions/<client_id>``: disconnect (MQTT 5: 0x98) and
  discard the session.

With a token, every endpoint but ``/metrics`` (and that one too with
``token_metrics``) needs ``Authorization: Bearer <token>``, compared in
constant time (:func:`hmac.compare_digest`); a browser opening the status
page may give it as ``/?token=...`` instead, which the page then sends as
that header. An error is ``{"error": ..., "status": ...}`` with that status;
a bad query parameter is a 400 that names it.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import attrs

from .._bridge_state import BridgeStatus
from ..broker._admin import Receiver, SharedReceivers
from ..errors import ProtocolError
from ..topics import validate_topic_filter, validate_topic_name
from ._metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from ._metrics import render_metrics
from ._status_page import STATUS_PAGE

if TYPE_CHECKING:
    from ..broker import Broker

__all__ = ["HttpApp", "HttpResponse"]

_JSON = "application/json"
_SESSION_PREFIX = "/api/v1/sessions/"


@attrs.frozen
class HttpResponse:
    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


def _json(status: int, document: Any) -> HttpResponse:
    return HttpResponse(status, _JSON, json.dumps(document).encode() + b"\n")


def _error(status: int, message: str, **extra: Any) -> HttpResponse:
    return _json(status, {"error": message, "status": status, **extra})


def _receiver(found: Receiver | SharedReceivers) -> dict[str, Any]:
    if isinstance(found, Receiver):
        return {"client_id": found.client_id, "topic_filter": found.topic_filter, "qos": found.qos}
    return {
        "group": found.group,
        "topic_filter": found.topic_filter,
        "members": [{"client_id": c, "qos": q} for c, q in found.members],
        "next": found.next,
    }


class _BadParameter(Exception):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


def _parameter(query: dict[str, list[str]], name: str) -> str:
    values = query.get(name)
    if not values:
        raise _BadParameter(name, f"the query parameter {name!r} is missing")
    if len(values) > 1:
        raise _BadParameter(name, f"the query parameter {name!r} is given more than once")
    return values[0]


class HttpApp:
    """The HTTP endpoints of one broker.

    :param broker: the broker to report on; it is only touched from the
        thread (loop) that runs it, which is where :meth:`respond` is called.
    :param clock: the ``now`` the broker's calls take (the server's clock).
    :param changed: called after a request changed the broker (a kick), so
        that the server writes what the broker now has to send.
    :param token: the bearer token every endpoint needs (None: none).
    :param token_metrics: ``/metrics`` needs the token too.
    :param bridges: the state of the server's bridges, now.
    """

    def __init__(
        self,
        broker: Broker,
        *,
        clock: Callable[[], float],
        changed: Callable[[], None] = lambda: None,
        token: str | None = None,
        token_metrics: bool = False,
        bridges: Callable[[], Sequence[BridgeStatus]] = tuple,
    ) -> None:
        self.broker = broker
        self._bridges = bridges
        self._clock = clock
        self._changed = changed
        self._token = None if token is None else f"Bearer {token}".encode()
        self._page_token = None if token is None else token.encode()
        self._token_metrics = token_metrics

    def _authorized(
        self, headers: Sequence[tuple[bytes, bytes]], query: dict[str, list[str]], page: bool
    ) -> bool:
        expected = self._token
        if expected is None:
            return True
        given = b""
        for name, value in headers:
            if name.lower() == b"authorization":
                given = value
        if hmac.compare_digest(given, expected):
            return True
        if page and self._page_token is not None:
            token = query.get("token", [""])[0].encode()
            return hmac.compare_digest(token, self._page_token)
        return False

    def respond(
        self, method: str, target: str, headers: Sequence[tuple[bytes, bytes]] = ()
    ) -> HttpResponse:
        """The answer to one request. Never raises for what a client sent."""
        parts = urlsplit(target)
        path = parts.path
        query = parse_qs(parts.query, keep_blank_values=True)
        protected = path != "/metrics" or self._token_metrics
        if protected and not self._authorized(headers, query, page=path == "/"):
            response = _error(401, "a valid bearer token is needed")
            return attrs.evolve(response, headers=(("WWW-Authenticate", "Bearer"),))
        try:
            return self._route(method, path, query)
        except _BadParameter as exc:
            return _error(400, str(exc), parameter=exc.name)

    def _route(self, method: str, path: str, query: dict[str, list[str]]) -> HttpResponse:
        if path.startswith(_SESSION_PREFIX):
            if method != "DELETE":
                return _error(405, f"{method} is not allowed on {path}; DELETE is")
            client_id = unquote(path[len(_SESSION_PREFIX) :])
            if not self.broker.kick(client_id, self._clock()):
                return _error(404, f"no session of client {client_id!r}")
            self._changed()
            return _json(200, {"client_id": client_id, "disconnected": True})
        handler = _GET.get(path)
        if handler is None:
            return _error(404, f"no such endpoint: {path}")
        if method not in ("GET", "HEAD"):
            return _error(405, f"{method} is not allowed on {path}; GET is")
        return handler(self, query)

    # -- GET endpoints ------------------------------------------------------------

    def _page(self, query: dict[str, list[str]]) -> HttpResponse:
        return HttpResponse(
            200,
            "text/html; charset=utf-8",
            STATUS_PAGE,
            (("Content-Security-Policy", "default-src 'self' 'unsafe-inline'"),),
        )

    def _metrics(self, query: dict[str, list[str]]) -> HttpResponse:
        return HttpResponse(
            200,
            METRICS_CONTENT_TYPE,
            render_metrics(self.broker.statistics(self._clock()), self._bridges()),
        )

    def _bridges_report(self, query: dict[str, list[str]]) -> HttpResponse:
        return _json(200, [attrs.asdict(status) for status in self._bridges()])

    def _stats(self, query: dict[str, list[str]]) -> HttpResponse:
        stats = self.broker.statistics(self._clock())
        return _json(
            200,
            {
                "uptime": round(stats.uptime, 3),
                "clients_connected": stats.clients_connected,
                "clients_disconnected": stats.clients_disconnected,
                "messages_received": stats.messages_received,
                "messages_sent": stats.messages_sent,
                "messages_dropped": sum(stats.dropped.values()),
                "subscriptions": stats.subscriptions,
                "retained_messages": stats.retained_messages,
            },
        )

    def _sessions(self, query: dict[str, list[str]]) -> HttpResponse:
        return _json(200, self.broker.session_reports(self._clock()))

    def _subscribers(self, query: dict[str, list[str]]) -> HttpResponse:
        topic = _parameter(query, "topic")
        try:
            validate_topic_name(topic)
        except ProtocolError as exc:
            raise _BadParameter("topic", f"topic: {exc}") from None
        return _json(200, [_receiver(r) for r in self.broker.receivers(topic)])

    def _retained(self, query: dict[str, list[str]]) -> HttpResponse:
        topic_filter = _parameter(query, "filter")
        try:
            validate_topic_filter(topic_filter)
        except ProtocolError as exc:
            raise _BadParameter("filter", f"filter: {exc}") from None
        now = self._clock()
        found = [
            {
                "topic": m.topic,
                "size": len(m.payload),
                "qos": int(m.qos),
                "expires_in": None if m.expires_at is None else max(0, round(m.expires_at - now)),
            }
            for m in self.broker.retained_at(topic_filter, now)
        ]
        found.sort(key=lambda item: str(item["topic"]))
        return _json(200, found)


_GET: dict[str, Callable[[HttpApp, dict[str, list[str]]], HttpResponse]] = {
    "/": HttpApp._page,
    "/metrics": HttpApp._metrics,
    "/api/v1/stats": HttpApp._stats,
    "/api/v1/sessions": HttpApp._sessions,
    "/api/v1/subscribers": HttpApp._subscribers,
    "/api/v1/retained": HttpApp._retained,
    "/api/v1/bridges": HttpApp._bridges_report,
}
