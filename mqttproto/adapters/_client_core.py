"""What the three client adapters share: everything but the I/O.

:class:`ClientCore` owns one :class:`~mqttproto.client.ClientConnection` for
the life of a client (across reconnects) and turns its events into the
results application calls wait for:

- pending operations keyed by packet id (``publish`` waits for PUBACK or
  PUBCOMP, ``subscribe`` for SUBACK, ``unsubscribe`` for UNSUBACK), each a
  :class:`Completion` the adapter turns into a future, an event or a blocking
  wait;
- routing of received messages to bounded :class:`MessageQueue` objects
  (per-subscription consumers first, then the client's default queue);
- MQTT 5 request/response: one response topic per client, correlation data
  per request;
- reconnect bookkeeping: ``clean_start=False`` after the first connection,
  the assigned client identifier kept, subscriptions replayed when the server
  lost the session, QoS 1/2 publishes the server lost published again, and
  operations made while offline held until the connection is back.

The pending operations live in :mod:`._client_operations`, the queues and
pending requests in :mod:`._client_routing`, MQTT 5 enhanced authentication
in :mod:`._client_auth`; this module ties them to the connection.

Like the protocol core, it opens no socket, starts no thread, reads no clock
and never sleeps: the adapter passes ``now`` and does the waiting. The only
callbacks it makes are the ones the adapter installs to wake its waiters.
"""

from __future__ import annotations

import contextlib
import random as _random
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .._state import ConnectionState
from ..client import ClientConnection
from ..config import ClientConfig
from ..enums import ProtocolVersion, QoS, ReasonCode, RetainHandling
from ..errors import LocalProtocolError, RemoteProtocolError
from ..events import (
    AuthChallenged,
    ConnectionAccepted,
    ConnectionRefused,
    Disconnected,
    Event,
    MessageReceived,
    PublishAcknowledged,
    PublishDiscarded,
    Reauthenticated,
    SubscribeAcknowledged,
    UnsubscribeAcknowledged,
)
from ..packets import Subscription, Will
from ._client_auth import AsyncAuthenticator, AuthenticationData, EnhancedAuth
from ._client_operations import (
    PendingOperation,
    PendingOperations,
    PendingPublish,
    PendingSubscribe,
    PendingUnsubscribe,
)
from ._client_routing import MessageRouter
from ._client_types import (
    DEFAULT_MAX_QUEUED_MESSAGES,
    Completion,
    ConnectError,
    ConnectionLostError,
    MessageQueue,
    ReconnectPolicy,
    Transport,
)

if TYPE_CHECKING:
    from ._websocket import WebSocketLayer

__all__ = ["ClientCore"]


class ClientCore:
    """The protocol-facing half of a client adapter (see the module docstring).

    The adapter's loop, for each network connection::

        core.begin()                          # then write core.data_to_send(now)
        on bytes:   core.receive(data, now)   # then write, and honour
                                              # core.reading_paused / core.finished
        on EOF or error: core.connection_lost(now)
        at core.timer(): core.handle_timer(now)

    and between connections, if :meth:`next_reconnect_delay` gives a delay,
    sleeps that long and begins again.
    """

    def __init__(
        self,
        host: str,
        port: int = 0,
        *,
        client_id: str = "",
        version: ProtocolVersion = ProtocolVersion.MQTT_5_0,
        username: str | None = None,
        password: bytes | str | None = None,
        transport: Transport = "tcp",
        websocket_path: str = "/mqtt",
        keep_alive: int = 60,
        clean_start: bool = True,
        session_expiry_interval: int | None = None,
        will: Will | None = None,
        config: ClientConfig | None = None,
        reconnect: bool | ReconnectPolicy = False,
        max_queued_messages: int = DEFAULT_MAX_QUEUED_MESSAGES,
        rng: _random.Random | None = None,
        connect_properties: dict[str, Any] | None = None,
        authentication_method: str | None = None,
        authentication_data: AuthenticationData = None,
        authenticator: AsyncAuthenticator | None = None,
    ) -> None:
        if transport not in ("tcp", "websocket", "unix"):
            raise ValueError(f"transport must be 'tcp', 'websocket' or 'unix', not {transport!r}")
        self.host = host
        self.port = port
        self.version = ProtocolVersion(version)
        self.conn = ClientConnection(self.version, config=config)
        self.transport: Transport = transport
        self.websocket_path = websocket_path
        self._client_id = client_id
        properties = dict(connect_properties or {})
        if authentication_method is None:
            # Given the old way, as CONNECT properties: the same thing.
            authentication_method = properties.pop("authentication_method", None)
            if authentication_data is None:
                authentication_data = properties.pop("authentication_data", None)
        elif {"authentication_method", "authentication_data"} & properties.keys():
            raise ValueError(
                "give the authentication method and data as arguments, not in connect_properties"
            )
        self._connect_args: dict[str, Any] = dict(
            username=username,
            password=password,
            keep_alive=keep_alive,
            will=will,
            session_expiry_interval=session_expiry_interval,
            **properties,
        )
        #: MQTT 5 enhanced authentication: the method, the exchanges.
        self.auth = EnhancedAuth(
            self.conn,
            method=authentication_method,
            data=authentication_data,
            authenticator=authenticator,
            fail_connect=self._fail_attempt,
        )
        self._clean_start = clean_start
        if reconnect is True:
            reconnect = ReconnectPolicy()
        self.reconnect_policy: ReconnectPolicy | None = reconnect or None
        self.rng = rng if rng is not None else _random.Random()
        self.max_queued_messages = max_queued_messages

        self._has_connected = False
        self._attempt = 0
        self._ws: WebSocketLayer | None = None
        #: Set by begin(); done when CONNACK (or the end of the attempt) came.
        self.connect_completion: Completion[ConnectionAccepted] = Completion()
        self.connected = False
        #: True once the client is closed for good (disconnect() or a final error).
        self.finished = False
        self.final_error: BaseException | None = None
        self.accepted: ConnectionAccepted | None = None

        #: Operations waiting for the server or the connection.
        self.operations = PendingOperations()
        #: The queues, ``on_message`` and the pending requests.
        self.router = MessageRouter(max_queued_messages, self.rng)
        self.on_connect: list[Callable[[ConnectionAccepted], object]] = []
        self.on_disconnect: list[Callable[[Disconnected], object]] = []

        self._handlers: dict[type[Event], Callable[[Any], None]] = {
            ConnectionAccepted: self._on_accepted,
            ConnectionRefused: self._on_refused,
            MessageReceived: self.router.route,
            PublishAcknowledged: self.operations.acknowledged,
            PublishDiscarded: self._on_discarded,
            SubscribeAcknowledged: self.operations.subscribed,
            UnsubscribeAcknowledged: self.operations.unsubscribed,
            Disconnected: self._on_disconnected,
            AuthChallenged: self.auth.challenged,
            Reauthenticated: self.auth.reauthenticated,
        }

    # -- the network connection --------------------------------------------------

    def begin(self) -> None:
        """A new network connection is open: start the MQTT (or WebSocket) handshake."""
        if self.finished:
            raise ConnectionLostError("the client is closed")
        self.connect_completion = Completion()
        if self.transport == "websocket":
            from ._websocket import WebSocketLayer

            default = self.port in (0, 80, 443)
            self._ws = WebSocketLayer(
                self.host if default else f"{self.host}:{self.port}", self.websocket_path
            )
        else:
            self._ws = None
            self._send_connect()

    def _send_connect(self) -> None:
        clean_start = self._clean_start if not self._has_connected else False
        client_id = self.conn.client_id if self._has_connected else self._client_id
        try:
            self.conn.connect(
                client_id=client_id,
                clean_start=clean_start,
                **self._connect_args,
                **self.auth.connect_arguments(),
            )
        except LocalProtocolError as exc:
            # A CONNECT the protocol forbids (an MQTT 5 property with 3.1.1,
            # say): the attempt fails with the reason, at once, rather than
            # waiting for a CONNACK that cannot come.
            self._fail_attempt(exc)

    def _fail_attempt(self, error: BaseException) -> None:
        self.connect_completion.set_error(error)

    def data_to_send(self, now: float) -> bytes:
        data = self.conn.data_to_send(now)
        ws = self._ws
        if ws is None:
            return data
        return ws.send(data) if data else ws.data_to_send()

    def receive(self, data: bytes, now: float) -> None:
        """Bytes from the transport."""
        ws = self._ws
        if ws is not None:
            was_open = ws.open
            try:
                data = ws.receive(data)
            except ConnectionError as exc:
                self.connect_completion.set_error(
                    ConnectError(f"WebSocket handshake failed: {exc}")
                )
                self.connection_lost(now)
                return
            if ws.open and not was_open:
                self._send_connect()
            if ws.closed:
                if data:
                    self._feed(data, now)
                self.connection_lost(now)
                return
            if not data:
                return
        self._feed(data, now)

    def _feed(self, data: bytes, now: float) -> None:
        # A protocol error of the server: the connection closed itself and
        # queued its goodbye and a Disconnected event; nothing to raise here.
        if self.conn.state is ConnectionState.IDLE:
            return
        with contextlib.suppress(RemoteProtocolError):
            self.conn.receive_data(data, now)
        self._process()

    def connection_lost(self, now: float) -> None:
        """The transport reached EOF or failed."""
        conn = self.conn
        if conn.state not in (ConnectionState.IDLE, ConnectionState.CLOSED):
            conn.receive_eof(now)
        self._process()
        if not self.connect_completion.done:
            self.connect_completion.set_error(
                ConnectionLostError("the connection closed before CONNACK")
            )

    @property
    def transport_should_close(self) -> bool:
        """The MQTT connection is over: write the last bytes and close."""
        return self.conn.closed or (self._ws is not None and self._ws.closed)

    def timer(self) -> float | None:
        return self.conn.get_timer()

    def handle_timer(self, now: float) -> None:
        self.conn.handle_timer(now)
        self._process()

    @property
    def reading_paused(self) -> bool:
        """Whether a consumer's queue is full: stop reading until it has room."""
        return self.router.reading_paused

    def next_reconnect_delay(self) -> float | None:
        """Seconds to wait before the next attempt; None: give up (the core
        is then finished and every waiter has its error)."""
        policy = self.reconnect_policy
        if self.finished:
            return None
        if policy is None or (
            policy.max_attempts is not None and self._attempt >= policy.max_attempts
        ):
            self.fail(ConnectionLostError("the connection was lost"))
            return None
        delay = policy.delay(self._attempt, self.rng)
        self._attempt += 1
        return delay

    @property
    def reconnecting(self) -> bool:
        return self.reconnect_policy is not None and self._has_connected and not self.finished

    # -- operations --------------------------------------------------------------

    def publish(
        self,
        topic: str,
        payload: bytes | str,
        *,
        qos: int = 0,
        retain: bool = False,
        **properties: Any,
    ) -> Completion[PublishAcknowledged | None]:
        """Publish; the completion's result is the acknowledgement (None at QoS 0)."""
        if isinstance(payload, str):
            payload = payload.encode()
        try:
            qos_ = QoS(qos)
        except ValueError:
            raise LocalProtocolError(f"QoS must be 0, 1 or 2, not {qos!r}") from None
        op = PendingPublish(Completion(), topic, bytes(payload), qos_, retain, properties)
        self._start(op)
        return op.completion

    def subscribe(
        self,
        subscriptions: str | Subscription | Sequence[str | Subscription],
        *,
        qos: int = 0,
        no_local: bool = False,
        retain_as_published: bool = False,
        retain_handling: RetainHandling | int = RetainHandling.SEND_ON_SUBSCRIBE,
        **properties: Any,
    ) -> Completion[tuple[ReasonCode, ...]]:
        """Subscribe; a filter string gets ``qos`` and the other options."""
        if isinstance(subscriptions, (str, Subscription)):
            subscriptions = [subscriptions]
        subs = tuple(
            Subscription(
                s,
                QoS(qos),
                no_local=no_local,
                retain_as_published=retain_as_published,
                retain_handling=RetainHandling(retain_handling),
            )
            if isinstance(s, str)
            else s
            for s in subscriptions
        )
        if not subs:
            raise LocalProtocolError("subscribe() needs at least one topic filter")
        op = PendingSubscribe(Completion(), subs, properties)
        self._start(op)
        return op.completion

    def unsubscribe(
        self, filters: str | Iterable[str], **properties: Any
    ) -> Completion[tuple[ReasonCode, ...]]:
        filters = (filters,) if isinstance(filters, str) else tuple(filters)
        if not filters:
            raise LocalProtocolError("unsubscribe() needs at least one topic filter")
        op = PendingUnsubscribe(Completion(), filters, properties)
        self._start(op)
        return op.completion

    def request(
        self, topic: str, payload: bytes | str, *, qos: int = 1, **properties: Any
    ) -> tuple[bytes, Completion[MessageReceived]]:
        """Publish a request with a response topic and correlation data.

        Subscribes to the client's response topic first if needed (the
        SUBSCRIBE goes out before the PUBLISH on the same connection, so the
        server has it before anyone can answer). Returns the correlation data
        (pass it to :meth:`cancel_request` on timeout) and the completion of
        the response.
        """
        if self.version != ProtocolVersion.MQTT_5_0:
            raise LocalProtocolError("request/response needs MQTT 5 (response topic property)")
        if "response_topic" in properties or "correlation_data" in properties:
            raise LocalProtocolError("request() sets response_topic and correlation_data itself")
        response_topic = self.response_topic
        operations = self.operations
        if response_topic not in operations.subscriptions and not operations.subscribing(
            response_topic
        ):
            self.subscribe(response_topic, qos=qos)
        correlation, completion = self.router.open_request()
        published = self.publish(
            topic,
            payload,
            qos=qos,
            response_topic=response_topic,
            correlation_data=correlation,
            **properties,
        )

        def failed(done: Completion[PublishAcknowledged | None]) -> None:
            try:
                done.result()
            except BaseException as exc:
                self.router.cancel_request(correlation)
                completion.set_error(exc)

        published.add_done_callback(failed)
        return correlation, completion

    def cancel_request(self, correlation: bytes) -> None:
        self.router.cancel_request(correlation)

    @property
    def response_topic(self) -> str:
        """The topic this client receives responses on (see
        :meth:`MessageRouter.response_topic`)."""
        return self.router.response_topic(self.accepted, self.conn.client_id)

    # -- enhanced authentication -------------------------------------------------

    def reauthenticate(
        self,
        authentication_data: bytes | None = None,
        *,
        reason_string: str | None = None,
        user_properties: Iterable[tuple[str, str]] = (),
    ) -> Completion[Reauthenticated]:
        """Start an MQTT 5 re-authentication; see :meth:`EnhancedAuth.reauthenticate`."""
        if self.finished:
            raise ConnectionLostError("the client is closed")
        return self.auth.reauthenticate(
            authentication_data, reason_string=reason_string, user_properties=user_properties
        )

    def answer_challenge(self, number: int, data: object) -> None:
        """An awaited authenticator answered challenge *number* (adapters call this)."""
        self.auth.answer(number, data)
        self._process()

    def authenticator_failed(self, number: int, error: BaseException) -> None:
        """An awaited authenticator raised *error* for challenge *number*."""
        self.auth.answer_failed(number, error)
        self._process()

    def disconnect(self, reason_code: ReasonCode = ReasonCode.NORMAL_DISCONNECTION) -> None:
        """Send DISCONNECT if connected; the client is finished."""
        if self.connected and self.conn.state is ConnectionState.CONNECTED:
            self.conn.disconnect(reason_code)
        self.fail(ConnectionLostError("the client disconnected"), clean=True)

    def fail(self, error: BaseException, *, clean: bool = False) -> None:
        """The client is finished: every waiter gets ``error``; queues end
        (normally if ``clean``, else with ``error``)."""
        if self.finished:
            return
        self.finished = True
        self.final_error = None if clean else error
        self.connected = False
        self.connect_completion.set_error(error)
        self.auth.close(error)
        self.operations.fail(error)
        self.router.close(error, clean=clean)
        self._process()

    # -- consumers ---------------------------------------------------------------

    def add_queue(self, topic_filter: str | None, maxsize: int | None = None) -> MessageQueue:
        """A queue of the messages matching ``topic_filter`` (claimed before
        the default queue sees them)."""
        queue = self.router.add_queue(topic_filter, maxsize)
        if self.finished:
            queue.close(self.final_error)
        return queue

    def remove_queue(self, queue: MessageQueue) -> None:
        self.router.remove_queue(queue)

    # -- internals -----------------------------------------------------------------

    def _start(self, op: PendingOperation) -> None:
        if self.finished:
            raise ConnectionLostError("the client is closed")
        if self.connected:
            self.operations.issue(self.conn, op)
        elif self.reconnecting or not self._has_connected:
            # Offline: held (bounded) until the connection is back.
            self.operations.hold(op, self.conn.config.max_queued_messages)
        else:
            raise ConnectionLostError("not connected")

    def _process(self) -> None:
        handlers = self._handlers
        for event in self.conn.events():
            handler = handlers.get(type(event))
            if handler is not None:
                handler(event)
        if self.connected:
            for op in self.operations.take_ready():
                self.operations.issue(self.conn, op)

    def _on_accepted(self, event: ConnectionAccepted) -> None:
        resumed_after_loss = self._has_connected and not event.session_present
        self._has_connected = True
        self.connected = True
        self._attempt = 0
        self.accepted = event
        if resumed_after_loss:
            self.operations.session_lost()
        self.connect_completion.set_result(event)
        for callback in self.on_connect:
            callback(event)

    def _on_refused(self, event: ConnectionRefused) -> None:
        self.connected = False
        name = getattr(event.reason_code, "name", str(event.reason_code))
        text = f"connection refused: {name} (0x{int(event.reason_code):02X})"
        if event.reason_string:
            text += f": {event.reason_string}"
        if self.auth.method is not None:
            text += f" (authentication method {self.auth.method})"
        self.connect_completion.set_error(ConnectError(text, event.reason_code))

    def _on_discarded(self, event: PublishDiscarded) -> None:
        republish = self.connected and self.reconnect_policy is not None and not self.finished
        self.operations.discarded(event, republish=republish)

    def _on_disconnected(self, event: Disconnected) -> None:
        was_connected = self.connected
        self.connected = False
        self.auth.connection_ended(event)
        for callback in self.on_disconnect:
            callback(event)
        if not was_connected:
            return
        if self.reconnect_policy is not None and not self.finished:
            self.operations.connection_ended(None)
            return
        name = getattr(event.reason_code, "name", str(event.reason_code))
        error = ConnectionLostError(f"connection lost: {name}", event.reason_code)
        self.operations.connection_ended(error)
        if not self.finished:
            self.fail(error)
