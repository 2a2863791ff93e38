"""The client adapters' shared vocabulary: exceptions, completions, queues, policy.

Split from :mod:`mqttproto.adapters._client_core`: the plain data types the
core and the three adapters pass around.
"""

from __future__ import annotations

import random as _random
import ssl
from collections import deque
from collections.abc import Callable
from typing import Generic, Literal, TypeVar

import attrs

from ..enums import ReasonCode
from ..errors import MQTTError
from ..events import MessageReceived
from ..topics import parse_shared_subscription, topic_matches

__all__ = [
    "DEFAULT_MAX_QUEUED_MESSAGES",
    "AuthenticationError",
    "ClientError",
    "Completion",
    "ConnectError",
    "ConnectionLostError",
    "MessageQueue",
    "PublishError",
    "ReconnectPolicy",
    "SubscribeError",
    "Transport",
    "default_port",
]

T = TypeVar("T")
Transport = Literal["tcp", "websocket", "unix"]

#: Messages a queue holds before the adapter stops reading from the server.
DEFAULT_MAX_QUEUED_MESSAGES = 1000


def default_port(transport: Transport, tls: ssl.SSLContext | None) -> int:
    """1883 for MQTT, 8883 for MQTT over TLS, 80/443 for MQTT over WebSocket."""
    if transport == "websocket":
        return 443 if tls is not None else 80
    return 8883 if tls is not None else 1883


# -- exceptions ----------------------------------------------------------------


class ClientError(MQTTError):
    """An operation of a client adapter failed.

    :ivar reason_code: the MQTT reason code that says why, when there is one.
    """

    def __init__(self, message: str, reason_code: ReasonCode | None = None) -> None:
        super().__init__(message)
        self.reason_code = reason_code


class ConnectError(ClientError):
    """The server refused the connection (CONNACK with a failure code)."""


class ConnectionLostError(ClientError):
    """The connection ended while an operation waited, and it will not come back
    (no reconnect policy, the policy gave up, or the client was closed)."""


class PublishError(ClientError):
    """The server refused a QoS 1/2 message (PUBACK or PUBREC with a failure
    code), or the message was discarded (:class:`~mqttproto.events.PublishDiscarded`)."""


class AuthenticationError(ClientError):
    """MQTT 5 enhanced authentication failed [MQTT-4.12].

    Raised by ``reauthenticate()`` when the server ends the connection
    during a re-authentication (it must, with DISCONNECT, when the
    re-authentication fails [MQTT-4.12.1-2]; ``reason_code`` is the
    DISCONNECT's), and by ``connect()`` or ``reauthenticate()`` when this
    side cannot go on: the server challenged a client that has no
    authenticator, or the authenticator raised (the exception is the
    ``__cause__``) or returned something other than bytes or None. A CONNECT
    the server refuses raises :class:`ConnectError`, as any refusal does.
    """


class SubscribeError(ClientError):
    """The server refused every filter of a SUBSCRIBE.

    :ivar reason_codes: the SUBACK's codes, one per filter.
    """

    def __init__(self, message: str, reason_codes: tuple[ReasonCode, ...]) -> None:
        super().__init__(message, reason_codes[0] if reason_codes else None)
        self.reason_codes = reason_codes


# -- completions and queues ----------------------------------------------------


class Completion(Generic[T]):
    """The outcome of one operation: a result or an exception, set once.

    The adapter adds a done callback that wakes whatever waits (an asyncio
    future, a trio event, a thread).
    """

    __slots__ = ("_callbacks", "_done", "_error", "_result")

    def __init__(self) -> None:
        self._done = False
        self._result: T | None = None
        self._error: BaseException | None = None
        self._callbacks: list[Callable[[Completion[T]], object]] = []

    @property
    def done(self) -> bool:
        return self._done

    def set_result(self, result: T) -> None:
        if not self._done:
            self._result = result
            self._finish()

    def set_error(self, error: BaseException) -> None:
        if not self._done:
            self._error = error
            self._finish()

    def _finish(self) -> None:
        self._done = True
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self)

    def add_done_callback(self, callback: Callable[[Completion[T]], object]) -> None:
        if self._done:
            callback(self)
        else:
            self._callbacks.append(callback)

    def result(self) -> T:
        """The result; raises the operation's exception. Only once done."""
        if not self._done:
            raise RuntimeError("the operation has not completed")
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]


class MessageQueue:
    """Received messages waiting for one consumer; bounded by ``maxsize``.

    When a queue holds ``maxsize`` messages the core asks the adapter to stop
    reading from the server (:attr:`ClientCore.reading_paused`) until the
    consumer takes one: messages are never dropped, the server holds them
    (and its flow control stops it sending more than its in-flight window of
    QoS 1/2 messages). One read already under way may still add what it
    carried, so the bound is ``maxsize`` plus one read's worth.
    """

    def __init__(self, topic_filter: str | None, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.topic_filter = topic_filter
        self._match: str | None = topic_filter
        if topic_filter is not None:
            shared = parse_shared_subscription(topic_filter)
            if shared is not None:
                self._match = shared.topic_filter
        self.maxsize = maxsize
        self._items: deque[MessageReceived] = deque()
        self.closed = False
        self.error: BaseException | None = None
        #: Called when a message arrives or the queue closes (the adapters'
        #: waiting consumers add themselves).
        self.wakers: list[Callable[[], object]] = []
        #: Called when a full queue gets room again (set by the core).
        self.on_space: Callable[[], object] | None = None

    def __len__(self) -> int:
        return len(self._items)

    @property
    def full(self) -> bool:
        return len(self._items) >= self.maxsize

    def matches(self, topic: str) -> bool:
        return self._match is None or topic_matches(self._match, topic)

    def put(self, message: MessageReceived) -> None:
        self._items.append(message)
        for waker in self.wakers:
            waker()

    def get_nowait(self) -> MessageReceived | None:
        """The next message; None when empty (see :attr:`closed`)."""
        items = self._items
        if not items:
            return None
        was_full = len(items) >= self.maxsize
        message = items.popleft()
        if was_full and len(items) < self.maxsize and self.on_space is not None:
            self.on_space()
        return message

    def close(self, error: BaseException | None = None) -> None:
        """No more messages will come; waiting consumers get what is left,
        then the end of iteration (or ``error``)."""
        if self.closed:
            return
        self.closed = True
        self.error = error
        for waker in list(self.wakers):
            waker()

    def next_or_end(self) -> MessageReceived | None:
        """The next message, or None at the end (raises the closing error).

        Only for when the queue is not empty or is closed.
        """
        message = self.get_nowait()
        if message is not None:
            return message
        if self.error is not None:
            raise self.error
        return None


# -- the reconnect policy ------------------------------------------------------


def _non_negative(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must not be negative")


def _fraction(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0 <= value <= 1:
        raise ValueError(f"{attribute.name} must be between 0 and 1")


@attrs.frozen
class ReconnectPolicy:
    """When to try again after the connection is lost.

    The n-th attempt in a row (n = 0, 1, ...) waits
    ``min(maximum, initial * factor**n)`` seconds, less a random part of up to
    ``jitter`` of it (so many clients cut off at once do not come back in
    step). ``max_attempts`` None tries forever.
    """

    initial: float = attrs.field(default=0.5, validator=_non_negative)
    maximum: float = attrs.field(default=30.0, validator=_non_negative)
    factor: float = attrs.field(default=2.0, validator=_non_negative)
    jitter: float = attrs.field(default=0.5, validator=_fraction)
    max_attempts: int | None = None

    def delay(self, attempt: int, rng: _random.Random) -> float:
        base = min(self.maximum, self.initial * self.factor**attempt)
        return base * (1.0 - self.jitter * rng.random())
