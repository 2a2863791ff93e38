"""A blocking MQTT client with one background I/O thread: :class:`Client`.

For code without an event loop, and for people coming from paho-mqtt::

    with Client("broker.example") as client:
        client.subscribe("sensors/#", qos=1)
        client.publish("sensors/kitchen", b"21.5", qos=1)   # returns after PUBACK
        for message in client.messages(timeout=5):
            print(message.topic, message.payload)

The I/O thread runs a private asyncio event loop driving the asyncio
adapter's client (itself a shell over the shared
:class:`~mqttproto.adapters._client_core.ClientCore`); the blocking methods
hand their work to that loop and wait for the result. So the three adapters
share one protocol implementation and this one shares the asyncio
transports (TCP, TLS, Unix sockets, WebSocket).

paho-style callbacks (``on_connect``, ``on_message``, ``on_disconnect``) run
in the I/O thread, as paho's do: keep them short. Inside a callback the
blocking methods cannot wait for the server (the thread that would read the
answer is the one waiting), so :meth:`Client.publish` called from a callback
queues the message and returns None at once, and the other blocking methods
raise :class:`RuntimeError` there.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import random as _random
import ssl as _ssl
import threading
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from ..config import ClientConfig
from ..enums import ProtocolVersion, ReasonCode
from ..events import (
    AuthChallenged,
    ConnectionAccepted,
    Disconnected,
    MessageReceived,
    PublishAcknowledged,
    Reauthenticated,
)
from ..packets import Subscription, Will
from ._asyncio_client import Client as AsyncClient
from ._client_auth import AuthenticationData, SyncAuthenticator
from ._client_core import ClientCore
from ._client_types import (
    DEFAULT_MAX_QUEUED_MESSAGES,
    AuthenticationError,
    ClientError,
    ConnectError,
    ConnectionLostError,
    MessageQueue,
    PublishError,
    ReconnectPolicy,
    SubscribeError,
    Transport,
)
from ._listener import Listener, server_ssl_context
from ._server_common import Endpoint
from ._threads_server import BrokerServer, serve

__all__ = [
    "AuthenticationError",
    "BrokerServer",
    "Client",
    "ClientError",
    "ConnectError",
    "ConnectionLostError",
    "Endpoint",
    "Listener",
    "MessageIterator",
    "PublishError",
    "ReconnectPolicy",
    "SubscribeError",
    "serve",
    "server_ssl_context",
]

T = TypeVar("T")

#: Seconds the I/O thread may take to stop after :meth:`Client.disconnect`.
STOP_TIMEOUT = 10.0


class MessageIterator:
    """``for message in ...``: blocks for each message; ends when the client
    closes, or (with ``timeout``) when no message came for that long."""

    def __init__(self, client: Client, queue: MessageQueue, timeout: float | None) -> None:
        self._client = client
        self._queue = queue
        self._timeout = timeout

    def __iter__(self) -> MessageIterator:
        return self

    def __next__(self) -> MessageReceived:
        message = self.get(self._timeout)
        if message is None:
            raise StopIteration
        return message

    def get(self, timeout: float | None = None) -> MessageReceived | None:
        """The next message; None at the end or after ``timeout`` seconds."""
        if not self._client._running():
            # The I/O thread has stopped: what is left in the queue, then the end.
            return self._queue.next_or_end()
        coroutine = self._next() if timeout is None else _none_after(self._next(), timeout)
        return self._client._call(coroutine, timeout=None)

    async def _next(self) -> MessageReceived | None:
        queue = self._queue
        while not len(queue) and not queue.closed:
            event = asyncio.Event()
            queue.wakers.append(event.set)
            try:
                await event.wait()
            finally:
                queue.wakers.remove(event.set)
        return queue.next_or_end()

    def __len__(self) -> int:
        return len(self._queue)


class Client:
    """A blocking MQTT client: ``with Client("broker.example") as client:``.

    The arguments are those of :class:`mqttproto.adapters.asyncio.Client`,
    except that the ``authenticator`` is a plain function: it runs on a
    worker thread (so it may block, for example to fetch a token), never in
    the I/O thread, and must not call the client's blocking methods.
    Every blocking method takes an optional ``timeout`` (seconds; None
    waits as long as it takes) and raises :class:`TimeoutError` past it.

    :ivar on_connect: ``on_connect(client, connack)`` after each accepted
        connection (:class:`~mqttproto.events.ConnectionAccepted`).
    :ivar on_disconnect: ``on_disconnect(client, disconnected)`` when a
        connection ends (:class:`~mqttproto.events.Disconnected`).
    :ivar on_message: ``on_message(client, message)``; when set, messages
        no :meth:`subscription` claims go to it instead of :meth:`messages`.
    """

    def __init__(
        self,
        host: str,
        port: int | None = None,
        *,
        client_id: str = "",
        version: ProtocolVersion = ProtocolVersion.MQTT_5_0,
        username: str | None = None,
        password: bytes | str | None = None,
        tls: _ssl.SSLContext | None = None,
        transport: Transport = "tcp",
        websocket_path: str = "/mqtt",
        keep_alive: int = 60,
        clean_start: bool = True,
        session_expiry_interval: int | None = None,
        will: Will | None = None,
        config: ClientConfig | None = None,
        reconnect: bool | ReconnectPolicy = False,
        max_queued_messages: int = DEFAULT_MAX_QUEUED_MESSAGES,
        connect_timeout: float = 10.0,
        rng: _random.Random | None = None,
        connect_properties: Mapping[str, Any] | None = None,
        authentication_method: str | None = None,
        authentication_data: AuthenticationData = None,
        authenticator: SyncAuthenticator | None = None,
    ) -> None:
        if authenticator is not None and inspect.iscoroutinefunction(authenticator):
            raise TypeError("the threads client's authenticator is a plain function, not async")
        self._async = AsyncClient(
            host,
            port,
            client_id=client_id,
            version=version,
            username=username,
            password=password,
            tls=tls,
            transport=transport,
            websocket_path=websocket_path,
            keep_alive=keep_alive,
            clean_start=clean_start,
            session_expiry_interval=session_expiry_interval,
            will=will,
            config=config,
            reconnect=reconnect,
            max_queued_messages=max_queued_messages,
            connect_timeout=connect_timeout,
            rng=rng,
            connect_properties=connect_properties,
            authentication_method=authentication_method,
            authentication_data=authentication_data,
            authenticator=None if authenticator is None else _on_worker_thread(authenticator),
        )
        self.host = self._async.host
        self.port = self._async.port
        self.on_connect: Callable[[Client, ConnectionAccepted], object] | None = None
        self.on_disconnect: Callable[[Client, Disconnected], object] | None = None
        self._on_message: Callable[[Client, MessageReceived], object] | None = None
        core = self._async.core
        core.on_connect.append(self._connected)
        core.on_disconnect.append(self._disconnected)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- properties ------------------------------------------------------------

    @property
    def core(self) -> ClientCore:
        return self._async.core

    @property
    def client_id(self) -> str:
        return self._async.client_id

    @property
    def connected(self) -> bool:
        return self._async.connected

    @property
    def connack(self) -> ConnectionAccepted | None:
        return self._async.connack

    @property
    def on_message(self) -> Callable[[Client, MessageReceived], object] | None:
        return self._on_message

    @on_message.setter
    def on_message(self, callback: Callable[[Client, MessageReceived], object] | None) -> None:
        self._on_message = callback
        router = self._async.core.router
        if callback is None:
            router.on_message = None
        else:
            router.on_message = lambda message: callback(self, message)

    # -- lifecycle ---------------------------------------------------------------

    def __enter__(self) -> Client:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.disconnect()

    def connect(self, timeout: float | None = None) -> ConnectionAccepted:
        """Start the I/O thread and connect; raises as the asyncio client's ``connect``."""
        if self._thread is not None:
            raise RuntimeError("connect() was already called")
        loop = self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=loop.run_forever, name=f"mqttproto-client-{self.host}", daemon=True
        )
        self._thread.start()
        try:
            return self._call(self._async.connect(), timeout=timeout)
        except BaseException:
            self._stop_thread()
            raise

    def disconnect(
        self,
        reason_code: ReasonCode = ReasonCode.NORMAL_DISCONNECTION,
        timeout: float | None = STOP_TIMEOUT,
    ) -> None:
        """Send DISCONNECT, close the connection and stop the I/O thread."""
        if self._thread is None or self._loop is None or self._loop.is_closed():
            return
        try:
            with contextlib.suppress(TimeoutError):
                self._call(self._async.disconnect(reason_code), timeout=timeout)
        finally:
            self._stop_thread()

    def _stop_thread(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(STOP_TIMEOUT)
        if not thread.is_alive():
            loop.close()

    # -- operations --------------------------------------------------------------

    def publish(
        self,
        topic: str,
        payload: bytes | str = b"",
        *,
        qos: int = 0,
        retain: bool = False,
        timeout: float | None = None,
        **properties: Any,
    ) -> PublishAcknowledged | None:
        """Publish and block until it is complete for its QoS (see the
        asyncio client's :meth:`~mqttproto.adapters.asyncio.Client.publish`).

        From a callback (in the I/O thread) the message is queued and None
        is returned at once.
        """
        if self._in_io_thread():
            self._async.core.publish(topic, payload, qos=qos, retain=retain, **properties)
            self._async._flush()
            return None
        return self._call(
            self._async.publish(topic, payload, qos=qos, retain=retain, **properties),
            timeout=timeout,
        )

    def subscribe(
        self,
        subscriptions: str | Subscription | Sequence[str | Subscription],
        qos: int = 0,
        *,
        timeout: float | None = None,
        **options: Any,
    ) -> tuple[ReasonCode, ...]:
        """Subscribe; returns the granted reason codes (raises
        :class:`SubscribeError` when every filter was refused)."""
        return self._call(self._async.subscribe(subscriptions, qos, **options), timeout=timeout)

    def unsubscribe(
        self, filters: str | Sequence[str], *, timeout: float | None = None, **options: Any
    ) -> tuple[ReasonCode, ...]:
        return self._call(self._async.unsubscribe(filters, **options), timeout=timeout)

    def request(
        self,
        topic: str,
        payload: bytes | str = b"",
        *,
        timeout: float,
        qos: int = 1,
        **properties: Any,
    ) -> MessageReceived:
        """MQTT 5 request/response; raises :class:`TimeoutError` after ``timeout``."""
        return self._call(
            self._async.request(topic, payload, timeout=timeout, qos=qos, **properties),
            timeout=None,
        )

    def reauthenticate(
        self,
        authentication_data: bytes | None = None,
        *,
        reason_string: str | None = None,
        user_properties: Iterable[tuple[str, str]] = (),
        timeout: float | None = None,
    ) -> Reauthenticated:
        """MQTT 5 re-authentication; blocks for the result and raises as the
        asyncio client's :meth:`~mqttproto.adapters.asyncio.Client.reauthenticate`
        (:class:`AuthenticationError` when the server refuses)."""
        return self._call(
            self._async.reauthenticate(
                authentication_data, reason_string=reason_string, user_properties=user_properties
            ),
            timeout=timeout,
        )

    def messages(self, timeout: float | None = None) -> MessageIterator:
        """Blocking iterator over messages no :meth:`subscription` claimed
        (and that no ``on_message`` callback took). With ``timeout``,
        iteration also ends after that many seconds without a message."""
        return MessageIterator(self, self._async.core.router.default_queue, timeout)

    @contextlib.contextmanager
    def subscription(
        self,
        topic_filter: str,
        qos: int = 0,
        *,
        timeout: float | None = None,
        maxsize: int | None = None,
        subscribe: bool = True,
        **options: Any,
    ) -> Iterator[MessageIterator]:
        """Subscribe for the block; iterate the messages matching ``topic_filter``."""
        core = self._async.core
        queue = self._run_in_loop(lambda: core.add_queue(topic_filter, maxsize))
        try:
            if subscribe:
                self.subscribe(topic_filter, qos, **options)
            yield MessageIterator(self, queue, timeout)
        finally:
            self._run_in_loop(lambda: core.remove_queue(queue))
            if subscribe and core.connected:
                with contextlib.suppress(ClientError, TimeoutError):
                    self.unsubscribe(topic_filter, timeout=STOP_TIMEOUT)

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Block until the client is closed for good (like paho's
        ``loop_forever``); False if ``timeout`` passed first."""
        event = threading.Event()

        def watch() -> None:
            core = self._async.core
            if core.finished:
                event.set()
            else:
                core.on_disconnect.append(lambda _: event.set() if core.finished else None)

        self._run_in_loop(watch)
        return event.wait(timeout)

    # -- internals -----------------------------------------------------------------

    def _running(self) -> bool:
        loop = self._loop
        return loop is not None and not loop.is_closed() and loop.is_running()

    def _in_io_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def _call(
        self,
        coroutine: Coroutine[Any, Any, T],
        *,
        timeout: float | None,
    ) -> T:
        """Run ``coroutine`` on the I/O loop and block for its result."""
        loop = self._loop
        if self._in_io_thread():
            coroutine.close()
            raise RuntimeError("a blocking client method was called from a callback")
        if loop is None or not self._running():
            coroutine.close()
            raise ConnectionLostError("the client is not running")
        future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def _run_in_loop(self, function: Callable[[], T]) -> T:
        async def call() -> T:
            return function()

        return self._call(call(), timeout=STOP_TIMEOUT)

    def _connected(self, event: ConnectionAccepted) -> None:
        if self.on_connect is not None:
            self.on_connect(self, event)

    def _disconnected(self, event: Disconnected) -> None:
        if self.on_disconnect is not None:
            self.on_disconnect(self, event)


def _on_worker_thread(
    authenticator: SyncAuthenticator,
) -> Callable[[AuthChallenged], Coroutine[Any, Any, bytes | None]]:
    """The asyncio client awaits the answer; a worker thread computes it, so
    a slow authenticator holds up neither keep-alive nor acknowledgements."""

    async def answer(challenge: AuthChallenged) -> bytes | None:
        return await asyncio.to_thread(authenticator, challenge)

    return answer


async def _none_after(
    coroutine: Coroutine[Any, Any, MessageReceived | None], timeout: float
) -> MessageReceived | None:
    try:
        return await asyncio.wait_for(coroutine, timeout)
    except TimeoutError:
        return None
