"""An MQTT client on trio: :class:`Client` (needs the ``trio`` extra).

The same client as :mod:`mqttproto.adapters.asyncio`'s, over trio streams:
TCP (``trio.open_tcp_stream``), TLS (``trio.SSLStream``), Unix sockets and
WebSocket. All protocol logic is the shared
:class:`~mqttproto.adapters._client_core.ClientCore`; this module only moves
bytes. Each network connection runs two tasks in the client's nursery: a
reader (feeds the core, waits while a consumer's queue is full) and a writer
(sends what the core has to send and wakes at the core's keep-alive timer,
on ``trio.current_time()``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import random as _random
import ssl as _ssl
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import trio

from ..config import ClientConfig
from ..enums import ProtocolVersion, ReasonCode
from ..events import ConnectionAccepted, MessageReceived, PublishAcknowledged, Reauthenticated
from ..packets import Subscription, Will
from ._client_auth import AsyncAuthenticator, AuthenticationData
from ._client_core import ClientCore
from ._client_types import (
    DEFAULT_MAX_QUEUED_MESSAGES,
    AuthenticationError,
    ClientError,
    Completion,
    ConnectError,
    ConnectionLostError,
    MessageQueue,
    PublishError,
    ReconnectPolicy,
    SubscribeError,
    Transport,
    default_port,
)
from ._listener import Listener, server_ssl_context
from ._server_common import Endpoint
from ._trio_server import BrokerServer, serve

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

logger = logging.getLogger("mqttproto.client")

T = TypeVar("T")

#: Bytes asked of the stream per read.
READ_SIZE = 65536
#: How long :meth:`Client.disconnect` waits for the last bytes to go out.
CLOSE_TIMEOUT = 5.0

_STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


class MessageIterator:
    """``async for message in ...``: messages from one queue until the client closes."""

    def __init__(self, queue: MessageQueue) -> None:
        self._queue = queue

    def __aiter__(self) -> MessageIterator:
        return self

    async def __anext__(self) -> MessageReceived:
        queue = self._queue
        while not len(queue) and not queue.closed:
            event = trio.Event()
            queue.wakers.append(event.set)
            try:
                await event.wait()
            finally:
                queue.wakers.remove(event.set)
        message = queue.next_or_end()
        if message is None:
            raise StopAsyncIteration
        return message

    def __len__(self) -> int:
        return len(self._queue)


class Client:
    """An MQTT client on trio: ``async with Client("broker.example") as client:``.

    The arguments are those of :class:`mqttproto.adapters.asyncio.Client`.
    The client runs its tasks in a nursery of its own, opened by ``async
    with`` and closed (after DISCONNECT) when the block ends. An async
    ``authenticator`` runs in a task of the connection it answers for, and
    is cancelled if that connection ends first.
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
        authenticator: AsyncAuthenticator | None = None,
    ) -> None:
        self.host = host
        self.port = default_port(transport, tls) if port is None else port
        self.tls = tls
        self.connect_timeout = connect_timeout
        self._core = ClientCore(
            host,
            self.port,
            client_id=client_id,
            version=version,
            username=username,
            password=password,
            transport=transport,
            websocket_path=websocket_path,
            keep_alive=keep_alive,
            clean_start=clean_start,
            session_expiry_interval=session_expiry_interval,
            will=will,
            config=config,
            reconnect=reconnect,
            max_queued_messages=max_queued_messages,
            rng=rng,
            connect_properties=dict(connect_properties or {}),
            authentication_method=authentication_method,
            authentication_data=authentication_data,
            authenticator=authenticator,
        )
        self._core.router.resume_reading = self._resume_reading
        self._core.auth.run_async = self._run_authenticator
        self._nursery: trio.Nursery | None = None
        self._nursery_manager: Any = None
        self._connection_scope: trio.CancelScope | None = None
        self._connection_nursery: trio.Nursery | None = None
        self._lost = trio.Event()
        self._wakeup = trio.Event()
        self._resume = trio.Event()

    # -- properties ------------------------------------------------------------

    @property
    def core(self) -> ClientCore:
        return self._core

    @property
    def client_id(self) -> str:
        return self._core.conn.client_id

    @property
    def connected(self) -> bool:
        return self._core.connected

    @property
    def connack(self) -> ConnectionAccepted | None:
        return self._core.accepted

    # -- lifecycle ---------------------------------------------------------------

    async def __aenter__(self) -> Client:
        if self._nursery_manager is not None:
            raise RuntimeError("the client was already started")
        self._nursery_manager = trio.open_nursery()
        self._nursery = await self._nursery_manager.__aenter__()
        try:
            await self._connect_once()
        except BaseException as exc:
            self._core.fail(exc)
            self._nursery.cancel_scope.cancel()
            await self._nursery_manager.__aexit__(None, None, None)
            raise
        self._nursery.start_soon(self._supervise)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        await self.disconnect()
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()
        # The body's exception is not the nursery's business: it propagates
        # as it is (not wrapped in an ExceptionGroup); only a failure of the
        # client's own tasks comes out of the nursery.
        await self._nursery_manager.__aexit__(None, None, None)
        return None

    async def _open_stream(self) -> trio.abc.Stream:
        if self._core.transport == "unix":
            stream: trio.abc.Stream = await trio.open_unix_socket(self.host)
            hostname = "localhost"
        else:
            stream = await trio.open_tcp_stream(self.host, self.port)
            hostname = self.host
        if self.tls is not None:
            ssl_stream = trio.SSLStream(stream, self.tls, server_hostname=hostname)
            await ssl_stream.do_handshake()
            stream = ssl_stream
        return stream

    async def _connect_once(self) -> ConnectionAccepted:
        nursery = self._nursery
        assert nursery is not None
        self._lost = trio.Event()
        core = self._core
        try:
            with trio.fail_after(self.connect_timeout):
                stream = await self._open_stream()
                core.begin()
                await nursery.start(self._connection, stream)
                return await self._wait(core.connect_completion)
        except trio.TooSlowError:
            self._end_connection()
            raise TimeoutError("no CONNACK within the connect timeout") from None
        except BaseException:
            self._end_connection()
            raise

    async def _connection(
        self, stream: trio.abc.Stream, *, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._connection_scope = nursery.cancel_scope
                self._connection_nursery = nursery
                nursery.start_soon(self._reader, stream, nursery.cancel_scope)
                nursery.start_soon(self._writer, stream, nursery.cancel_scope)
                task_status.started()
        finally:
            self._core.connection_lost(trio.current_time())
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)
            self._lost.set()

    async def _reader(self, stream: trio.abc.Stream, scope: trio.CancelScope) -> None:
        core = self._core
        while True:
            while core.reading_paused and not core.finished:
                # Back-pressure: a consumer's queue is full; the server waits.
                self._resume = trio.Event()
                await self._resume.wait()
            try:
                data = await stream.receive_some(READ_SIZE)
            except _STREAM_ERRORS:
                data = b""
            if not data:
                scope.cancel()
                return
            core.receive(bytes(data), trio.current_time())
            self._wakeup.set()

    async def _writer(self, stream: trio.abc.Stream, scope: trio.CancelScope) -> None:
        core = self._core
        while True:
            # A new event before reading the core: a wake-up after this point
            # is never missed.
            wakeup = self._wakeup = trio.Event()
            data = core.data_to_send(trio.current_time())
            if data:
                try:
                    await stream.send_all(data)
                except _STREAM_ERRORS:
                    scope.cancel()
                    return
            if core.transport_should_close:
                scope.cancel()
                return
            deadline = core.timer()
            with trio.move_on_at(math.inf if deadline is None else deadline):
                await wakeup.wait()
            if deadline is not None and trio.current_time() >= deadline:
                core.handle_timer(trio.current_time())

    def _end_connection(self) -> None:
        if self._connection_scope is not None:
            self._connection_scope.cancel()

    async def _supervise(self) -> None:
        core = self._core
        while not core.finished:
            await self._lost.wait()
            while not core.finished:
                delay = core.next_reconnect_delay()
                if delay is None:
                    return
                logger.info("connection lost; reconnecting in %.2f s", delay)
                await trio.sleep(delay)
                if core.finished:
                    return
                try:
                    await self._connect_once()
                except (OSError, ClientError, TimeoutError) as exc:
                    logger.info("reconnect failed: %s", exc)
                    continue
                logger.info("reconnected")
                break

    async def disconnect(self, reason_code: ReasonCode = ReasonCode.NORMAL_DISCONNECTION) -> None:
        """Send DISCONNECT, close the connection and stop reconnecting."""
        core = self._core
        if not core.finished:
            core.disconnect(reason_code)
            self._wake()
        with trio.move_on_after(CLOSE_TIMEOUT):
            if self._connection_scope is not None and not self._lost.is_set():
                await self._lost.wait()
        self._end_connection()

    # -- operations --------------------------------------------------------------

    async def publish(
        self,
        topic: str,
        payload: bytes | str = b"",
        *,
        qos: int = 0,
        retain: bool = False,
        **properties: Any,
    ) -> PublishAcknowledged | None:
        """As :meth:`mqttproto.adapters.asyncio.Client.publish`."""
        completion = self._core.publish(topic, payload, qos=qos, retain=retain, **properties)
        self._wake()
        return await self._wait(completion)

    async def subscribe(
        self,
        subscriptions: str | Subscription | Sequence[str | Subscription],
        qos: int = 0,
        **options: Any,
    ) -> tuple[ReasonCode, ...]:
        """As :meth:`mqttproto.adapters.asyncio.Client.subscribe`."""
        completion = self._core.subscribe(subscriptions, qos=qos, **options)
        self._wake()
        return await self._wait(completion)

    async def unsubscribe(
        self, filters: str | Sequence[str], **options: Any
    ) -> tuple[ReasonCode, ...]:
        """As :meth:`mqttproto.adapters.asyncio.Client.unsubscribe`."""
        completion = self._core.unsubscribe(filters, **options)
        self._wake()
        return await self._wait(completion)

    async def request(
        self,
        topic: str,
        payload: bytes | str = b"",
        *,
        timeout: float,
        qos: int = 1,
        **properties: Any,
    ) -> MessageReceived:
        """As :meth:`mqttproto.adapters.asyncio.Client.request`."""
        correlation, completion = self._core.request(topic, payload, qos=qos, **properties)
        self._wake()
        with trio.move_on_after(timeout):
            return await self._wait(completion)
        self._core.cancel_request(correlation)
        raise TimeoutError(f"no response on {topic!r} within {timeout} s")

    async def reauthenticate(
        self,
        authentication_data: bytes | None = None,
        *,
        reason_string: str | None = None,
        user_properties: Iterable[tuple[str, str]] = (),
    ) -> Reauthenticated:
        """As :meth:`mqttproto.adapters.asyncio.Client.reauthenticate`."""
        completion = self._core.reauthenticate(
            authentication_data, reason_string=reason_string, user_properties=user_properties
        )
        self._wake()
        return await self._wait(completion)

    def messages(self) -> MessageIterator:
        """Every received message no :meth:`subscription` claimed."""
        return MessageIterator(self._core.router.default_queue)

    @contextlib.asynccontextmanager
    async def subscription(
        self,
        topic_filter: str,
        qos: int = 0,
        *,
        maxsize: int | None = None,
        subscribe: bool = True,
        **options: Any,
    ) -> AsyncIterator[MessageIterator]:
        """As :meth:`mqttproto.adapters.asyncio.Client.subscription`."""
        core = self._core
        queue = core.add_queue(topic_filter, maxsize)
        try:
            if subscribe:
                await self.subscribe(topic_filter, qos, **options)
            yield MessageIterator(queue)
        finally:
            core.remove_queue(queue)
            if subscribe and core.connected:
                with contextlib.suppress(ClientError):
                    await self.unsubscribe(topic_filter)

    # -- internals -----------------------------------------------------------------

    def _wake(self) -> None:
        self._wakeup.set()

    def _resume_reading(self) -> None:
        self._resume.set()

    def _run_authenticator(self, number: int, answer: Awaitable[bytes | None]) -> None:
        # Called from the reader task, inside the connection's nursery: the
        # answer dies with the connection it is for.
        nursery = self._connection_nursery
        assert nursery is not None
        nursery.start_soon(self._answer, number, answer)

    async def _answer(self, number: int, answer: Awaitable[bytes | None]) -> None:
        try:
            data = await answer
        except Exception as exc:
            self._core.authenticator_failed(number, exc)
        else:
            self._core.answer_challenge(number, data)
        self._wake()

    async def _wait(self, completion: Completion[T]) -> T:
        if not completion.done:
            event = trio.Event()
            completion.add_done_callback(lambda _: event.set())
            await event.wait()
        return completion.result()
