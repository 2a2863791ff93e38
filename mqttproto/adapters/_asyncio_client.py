"""The asyncio MQTT client: :class:`Client`, re-exported by :mod:`mqttproto.adapters.asyncio`.

A thin I/O shell over :class:`~mqttproto.adapters._client_core.ClientCore`:
one :class:`asyncio.Protocol` per network connection feeds the core the
bytes it reads (with ``loop.time()`` as ``now``), writes what the core has
to send, re-arms one ``loop.call_at`` timer for keep-alive, and pauses
reading while a consumer's queue is full. A supervisor task reconnects when
a reconnect policy is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random as _random
import ssl as _ssl
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from ..config import ClientConfig
from ..enums import ProtocolVersion, ReasonCode
from ..events import ConnectionAccepted, MessageReceived, PublishAcknowledged, Reauthenticated
from ..packets import Subscription, Will
from ._client_auth import AsyncAuthenticator, AuthenticationData
from ._client_core import ClientCore
from ._client_types import (
    DEFAULT_MAX_QUEUED_MESSAGES,
    ClientError,
    Completion,
    MessageQueue,
    ReconnectPolicy,
    Transport,
    default_port,
)

__all__ = ["Client", "MessageIterator"]

logger = logging.getLogger("mqttproto.client")

T = TypeVar("T")

#: How long :meth:`Client.disconnect` waits for the transport to close.
CLOSE_TIMEOUT = 5.0


class _Protocol(asyncio.Protocol):
    def __init__(self, client: Client) -> None:
        self._client = client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._client._connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._client._data_received(data)

    def eof_received(self) -> bool:
        self._client._lost_connection()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._client._lost_connection()
        self._client._transport_closed()


class MessageIterator:
    """``async for message in ...``: messages from one queue until the client closes.

    Iteration ends when the client disconnects (or the subscription's block
    exits), and raises :class:`ConnectionLostError` when the connection is
    lost for good.
    """

    def __init__(self, queue: MessageQueue) -> None:
        self._queue = queue

    def __aiter__(self) -> MessageIterator:
        return self

    async def __anext__(self) -> MessageReceived:
        queue = self._queue
        while not len(queue) and not queue.closed:
            event = asyncio.Event()
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
        """Messages waiting in the queue."""
        return len(self._queue)


class Client:
    """An MQTT client on asyncio: ``async with Client("broker.example") as client:``.

    :param host: the server's name or address; for ``transport="unix"`` the
        socket's path.
    :param port: default 1883, 8883 with ``tls``, 80 (443 with ``tls``) for
        WebSocket; ignored for Unix sockets.
    :param client_id: "" lets an MQTT 5 server assign one (kept across
        reconnects).
    :param version: the protocol version.
    :param tls: an :class:`ssl.SSLContext` for MQTT over TLS (or ``wss``).
    :param transport: ``"tcp"``, ``"websocket"`` (needs ``wsproto``) or ``"unix"``.
    :param websocket_path: the HTTP path of the WebSocket endpoint.
    :param keep_alive: seconds; PINGREQ is sent from the loop's clock.
    :param clean_start: for the first connection; reconnects always resume.
    :param session_expiry_interval: MQTT 5 session expiry (seconds).
    :param will: the will message.
    :param config: protocol limits (:class:`~mqttproto.config.ClientConfig`).
    :param reconnect: True (the default :class:`ReconnectPolicy`) or a
        policy: reconnect automatically after the connection is lost.
    :param max_queued_messages: bound of each message queue (see
        :ref:`back-pressure <client-back-pressure>`).
    :param connect_timeout: seconds for a connection attempt (TCP, TLS,
        WebSocket and CONNACK together).
    :param rng: the random numbers of the reconnect jitter.
    :param connect_properties: more keyword arguments for
        :meth:`~mqttproto.client.ClientConnection.connect` (MQTT 5 properties
        such as ``request_response_information`` or ``user_properties``).
    :param authentication_method: MQTT 5 enhanced authentication: the
        Authentication Method of every CONNECT (and re-authentication).
    :param authentication_data: the Authentication Data of CONNECT and of
        :meth:`reauthenticate`: bytes, or a function called for each exchange
        that returns them (or None).
    :param authenticator: answers each challenge of the server (AUTH 0x18):
        called with the :class:`~mqttproto.events.AuthChallenged`, returns
        the Authentication Data of the client's AUTH, bytes or None. A plain
        function runs on the loop (keep it short); a coroutine function is
        awaited in a task, while the connection carries on. See
        :ref:`enhanced-authentication`.
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
        self._auth_tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._transport: asyncio.Transport | None = None
        self._lost = asyncio.Event()
        self._closed = asyncio.Event()
        self._closed.set()
        self._timer: asyncio.TimerHandle | None = None
        self._paused = False
        self._supervisor: asyncio.Task[None] | None = None

    # -- properties ------------------------------------------------------------

    @property
    def core(self) -> ClientCore:
        """The shared protocol-facing core (its ``conn`` is the sans-IO connection)."""
        return self._core

    @property
    def client_id(self) -> str:
        """The client identifier (the server's choice if it assigned one)."""
        return self._core.conn.client_id

    @property
    def connected(self) -> bool:
        return self._core.connected

    @property
    def connack(self) -> ConnectionAccepted | None:
        """The CONNACK of the current (or last) connection."""
        return self._core.accepted

    # -- lifecycle ---------------------------------------------------------------

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.disconnect()

    async def connect(self) -> ConnectionAccepted:
        """Connect (the first time); raises :class:`ConnectError`, ``OSError``
        or ``TimeoutError``. With a reconnect policy, later connections are
        made automatically."""
        if self._loop is not None:
            raise RuntimeError("connect() was already called")
        self._loop = asyncio.get_running_loop()
        try:
            accepted = await self._connect_once()
        except BaseException as exc:
            self._core.fail(exc)
            raise
        self._supervisor = self._loop.create_task(self._supervise())
        return accepted

    async def _connect_once(self) -> ConnectionAccepted:
        loop = self._loop
        assert loop is not None
        self._lost = asyncio.Event()
        core = self._core
        try:
            async with asyncio.timeout(self.connect_timeout):
                if core.transport == "unix":
                    await loop.create_unix_connection(
                        lambda: _Protocol(self),
                        self.host,
                        ssl=self.tls,
                        server_hostname="localhost" if self.tls is not None else None,
                    )
                else:
                    await loop.create_connection(
                        lambda: _Protocol(self), self.host, self.port, ssl=self.tls
                    )
                return await self._wait(core.connect_completion)
        except BaseException:
            self._abort()
            raise

    async def _supervise(self) -> None:
        core = self._core
        while not core.finished:
            await self._lost.wait()
            while not core.finished:
                delay = core.next_reconnect_delay()
                if delay is None:
                    return
                logger.info("connection lost; reconnecting in %.2f s", delay)
                await asyncio.sleep(delay)
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
        """Send DISCONNECT, close the connection and stop reconnecting.

        Operations still waiting raise :class:`ConnectionLostError`; message
        iterators end after the messages already queued.
        """
        core = self._core
        if not core.finished:
            core.disconnect(reason_code)
            self._flush()
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
        self._cancel_authenticators()
        if self._transport is not None:
            try:
                await asyncio.wait_for(self._closed.wait(), CLOSE_TIMEOUT)
            except TimeoutError:
                self._abort()
        self._cancel_timer()

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
        """Publish and wait until it is complete for its QoS.

        QoS 0: handed to the transport; QoS 1: PUBACK; QoS 2: PUBCOMP (the
        acknowledgement is returned). ``properties`` are MQTT 5 PUBLISH
        properties (``message_expiry_interval``, ``user_properties``, ...).

        :raises PublishError: the server refused it (``reason_code``).
        :raises ConnectionLostError: the connection ended for good first.
        """
        completion = self._core.publish(topic, payload, qos=qos, retain=retain, **properties)
        self._flush()
        return await self._wait(completion)

    async def subscribe(
        self,
        subscriptions: str | Subscription | Sequence[str | Subscription],
        qos: int = 0,
        **options: Any,
    ) -> tuple[ReasonCode, ...]:
        """Subscribe; returns the granted reason codes (one per filter).

        ``options``: ``no_local``, ``retain_as_published``,
        ``retain_handling`` (for filter strings), ``subscription_identifier``
        and ``user_properties``.

        :raises SubscribeError: every filter was refused (a partial refusal
            returns normally: check the codes).
        """
        completion = self._core.subscribe(subscriptions, qos=qos, **options)
        self._flush()
        return await self._wait(completion)

    async def unsubscribe(
        self, filters: str | Sequence[str], **options: Any
    ) -> tuple[ReasonCode, ...]:
        """Unsubscribe; returns the UNSUBACK's codes (empty before MQTT 5)."""
        completion = self._core.unsubscribe(filters, **options)
        self._flush()
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
        """MQTT 5 request/response: publish with a response topic and
        correlation data, and wait for the matching response.

        :raises TimeoutError: no response within ``timeout`` seconds.
        """
        correlation, completion = self._core.request(topic, payload, qos=qos, **properties)
        self._flush()
        try:
            return await asyncio.wait_for(self._wait(completion), timeout)
        except TimeoutError:
            self._core.cancel_request(correlation)
            raise TimeoutError(f"no response on {topic!r} within {timeout} s") from None

    async def reauthenticate(
        self,
        authentication_data: bytes | None = None,
        *,
        reason_string: str | None = None,
        user_properties: Iterable[tuple[str, str]] = (),
    ) -> Reauthenticated:
        """MQTT 5 re-authentication [MQTT-4.12.1-1]: run the exchange again
        on the live connection and wait for its result.

        Sends AUTH 0x19 with ``authentication_data`` (None: the client's
        ``authentication_data``, as in CONNECT); the authenticator answers
        the server's challenges. Returns the server's final AUTH 0x00
        (:class:`~mqttproto.events.Reauthenticated`, with any final data).

        :raises AuthenticationError: the server refused (it ends the
            connection with DISCONNECT, whose code is ``reason_code``
            [MQTT-4.12.1-2]; with a reconnect policy the client then
            reconnects, running the exchange of CONNECT again), or the
            authenticator failed.
        :raises ClientError: no ``authentication_method``, not connected, or
            another re-authentication is under way.
        :raises ConnectionLostError: the connection ended otherwise first.
        """
        completion = self._core.reauthenticate(
            authentication_data, reason_string=reason_string, user_properties=user_properties
        )
        self._flush()
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
        """Subscribe for the block; iterate the messages that match ``topic_filter``.

        The messages it matches go to this iterator (and any other matching
        one), not to :meth:`messages`. With ``subscribe=False`` it only
        filters (another call subscribed). Unsubscribes at the end.
        """
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

    # -- the transport -------------------------------------------------------------

    def _now(self) -> float:
        loop = self._loop
        assert loop is not None
        return loop.time()

    async def _wait(self, completion: Completion[T]) -> T:
        if completion.done:
            return completion.result()
        loop = self._loop
        assert loop is not None
        future: asyncio.Future[None] = loop.create_future()

        def wake(_: Completion[T]) -> None:
            if not future.done():
                future.set_result(None)

        completion.add_done_callback(wake)
        await future
        return completion.result()

    def _connection_made(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._closed = asyncio.Event()
        self._paused = False
        self._core.begin()
        self._flush()

    def _data_received(self, data: bytes) -> None:
        self._core.receive(data, self._now())
        self._flush()

    def _lost_connection(self) -> None:
        if self._transport is None or self._lost.is_set():
            return
        self._core.connection_lost(self._now())
        self._cancel_timer()
        self._cancel_authenticators()
        self._lost.set()
        self._flush()

    def _transport_closed(self) -> None:
        self._transport = None
        self._closed.set()

    def _flush(self) -> None:
        transport = self._transport
        core = self._core
        if transport is None or transport.is_closing():
            return
        data = core.data_to_send(self._now())
        if data:
            transport.write(data)
        if core.transport_should_close:
            transport.close()
            self._cancel_timer()
            return
        if core.reading_paused and not self._paused:
            self._paused = True
            transport.pause_reading()
        self._arm_timer()

    def _run_authenticator(self, number: int, answer: Awaitable[bytes | None]) -> None:
        loop = self._loop
        assert loop is not None
        task = loop.create_task(self._answer(number, answer))
        self._auth_tasks.add(task)
        task.add_done_callback(self._auth_tasks.discard)
        if inspect.iscoroutine(answer):
            # Cancelled before it ran, the coroutine was never awaited: close it.
            task.add_done_callback(lambda _: answer.close())

    async def _answer(self, number: int, answer: Awaitable[bytes | None]) -> None:
        try:
            data = await answer
        except Exception as exc:
            self._core.authenticator_failed(number, exc)
        else:
            self._core.answer_challenge(number, data)
        self._flush()

    def _cancel_authenticators(self) -> None:
        for task in list(self._auth_tasks):
            task.cancel()

    def _resume_reading(self) -> None:
        transport = self._transport
        if self._paused and transport is not None and not transport.is_closing():
            self._paused = False
            transport.resume_reading()

    def _abort(self) -> None:
        transport = self._transport
        if transport is not None:
            transport.abort()

    def _arm_timer(self) -> None:
        deadline = self._core.timer()
        timer = self._timer
        if timer is not None:
            if deadline is not None and timer.when() == deadline:
                return
            timer.cancel()
            self._timer = None
        if deadline is not None:
            loop = self._loop
            assert loop is not None
            self._timer = loop.call_at(deadline, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        self._core.handle_timer(self._now())
        self._flush()
