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

Like the protocol core, it opens no socket, starts no thread, reads no clock
and never sleeps: the adapter passes ``now`` and does the waiting. The only
callbacks it makes are the ones the adapter installs to wake its waiters.
"""

from __future__ import annotations

import contextlib
import random as _random
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from .._state import ConnectionState
from ..client import ClientConnection
from ..config import ClientConfig
from ..enums import ProtocolVersion, QoS, ReasonCode, RetainHandling
from ..errors import LocalProtocolError, RemoteProtocolError
from ..events import (
    ConnectionAccepted,
    ConnectionRefused,
    Disconnected,
    Event,
    MessageReceived,
    PublishAcknowledged,
    PublishDiscarded,
    SubscribeAcknowledged,
    UnsubscribeAcknowledged,
)
from ..packets import Subscription, Will
from ._client_types import (
    DEFAULT_MAX_QUEUED_MESSAGES,
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

if TYPE_CHECKING:
    from ._websocket import WebSocketLayer

__all__ = [
    "DEFAULT_MAX_QUEUED_MESSAGES",
    "ClientCore",
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


# -- pending operations --------------------------------------------------------


@attrs.define
class _Publish:
    completion: Completion[PublishAcknowledged | None]
    topic: str
    payload: bytes
    qos: QoS
    retain: bool
    properties: dict[str, Any]


@attrs.define
class _Subscribe:
    completion: Completion[tuple[ReasonCode, ...]]
    subscriptions: tuple[Subscription, ...]
    properties: dict[str, Any]


@attrs.define
class _Unsubscribe:
    completion: Completion[tuple[ReasonCode, ...]]
    filters: tuple[str, ...]
    properties: dict[str, Any]


_Operation = _Publish | _Subscribe | _Unsubscribe


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
        self._connect_args: dict[str, Any] = dict(
            username=username,
            password=password,
            keep_alive=keep_alive,
            will=will,
            session_expiry_interval=session_expiry_interval,
            **(connect_properties or {}),
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

        self._publishes: dict[int, _Publish] = {}
        self._subscribes: dict[int, _Subscribe] = {}
        self._unsubscribes: dict[int, _Unsubscribe] = {}
        self._offline: deque[_Operation] = deque()
        #: Sent first when a connection is accepted: subscriptions and QoS 1/2
        #: messages of a session the server lost, in their original order.
        self._replay: list[_Operation] = []
        #: Filters granted by the server, replayed when a session is lost.
        self.subscriptions: dict[str, Subscription] = {}
        self._subscription_properties: dict[str, dict[str, Any]] = {}

        self.default_queue = MessageQueue(None, max_queued_messages)
        self.default_queue.on_space = self._queue_has_space
        self._filtered: list[MessageQueue] = []
        #: Instead of the default queue, unclaimed messages go here when set.
        self.on_message: Callable[[MessageReceived], object] | None = None
        #: Called (by the core) when reading may resume after a pause.
        self.resume_reading: Callable[[], object] | None = None
        self.on_connect: list[Callable[[ConnectionAccepted], object]] = []
        self.on_disconnect: list[Callable[[Disconnected], object]] = []

        self._response_topic: str | None = None
        self._requests: dict[bytes, Completion[MessageReceived]] = {}
        self._request_counter = 0
        self._request_prefix = self.rng.getrandbits(64).to_bytes(8, "big")

        self._handlers: dict[type[Event], Callable[[Any], None]] = {
            ConnectionAccepted: self._on_accepted,
            ConnectionRefused: self._on_refused,
            MessageReceived: self._on_message,
            PublishAcknowledged: self._on_puback,
            PublishDiscarded: self._on_discarded,
            SubscribeAcknowledged: self._on_suback,
            UnsubscribeAcknowledged: self._on_unsuback,
            Disconnected: self._on_disconnected,
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
        self.conn.connect(client_id=client_id, clean_start=clean_start, **self._connect_args)

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
        if self.on_message is None and self.default_queue.full:
            return True
        return any(queue.full for queue in self._filtered)

    def _queue_has_space(self) -> None:
        if not self.reading_paused and self.resume_reading is not None:
            self.resume_reading()

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
        op = _Publish(Completion(), topic, bytes(payload), qos_, retain, properties)
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
        op = _Subscribe(Completion(), subs, properties)
        self._start(op)
        return op.completion

    def unsubscribe(
        self, filters: str | Iterable[str], **properties: Any
    ) -> Completion[tuple[ReasonCode, ...]]:
        filters = (filters,) if isinstance(filters, str) else tuple(filters)
        if not filters:
            raise LocalProtocolError("unsubscribe() needs at least one topic filter")
        op = _Unsubscribe(Completion(), filters, properties)
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
        if response_topic not in self.subscriptions and not self._subscribing(response_topic):
            self.subscribe(response_topic, qos=qos)
        self._request_counter += 1
        correlation = self._request_prefix + self._request_counter.to_bytes(8, "big")
        completion: Completion[MessageReceived] = Completion()
        self._requests[correlation] = completion
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
                self._requests.pop(correlation, None)
                completion.set_error(exc)

        published.add_done_callback(failed)
        return correlation, completion

    def cancel_request(self, correlation: bytes) -> None:
        self._requests.pop(correlation, None)

    @property
    def response_topic(self) -> str:
        """The topic this client receives responses on.

        ``<response information>/responses`` when the server offered response
        information in CONNACK, else ``<client id>/responses``.
        """
        if self._response_topic is None:
            info = self.accepted.response_information if self.accepted is not None else None
            base = info.rstrip("/") if info else (self.conn.client_id or "mqttproto")
            self._response_topic = f"{base}/responses"
        return self._response_topic

    def _subscribing(self, topic_filter: str) -> bool:
        ops: Iterable[_Operation] = (*self._subscribes.values(), *self._offline)
        return any(
            isinstance(op, _Subscribe)
            and any(s.topic_filter == topic_filter for s in op.subscriptions)
            for op in ops
        )

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
        pending: list[_Operation] = [
            *self._publishes.values(),
            *self._subscribes.values(),
            *self._unsubscribes.values(),
            *self._replay,
            *self._offline,
        ]
        self._replay.clear()
        self._publishes.clear()
        self._subscribes.clear()
        self._unsubscribes.clear()
        self._offline.clear()
        for op in pending:
            op.completion.set_error(error)
        requests = list(self._requests.values())
        self._requests.clear()
        for request in requests:
            request.set_error(error)
        for queue in (self.default_queue, *self._filtered):
            queue.close(None if clean else error)
        self._process()

    # -- consumers ---------------------------------------------------------------

    def add_queue(self, topic_filter: str | None, maxsize: int | None = None) -> MessageQueue:
        """A queue of the messages matching ``topic_filter`` (claimed before
        the default queue sees them)."""
        queue = MessageQueue(topic_filter, maxsize or self.max_queued_messages)
        queue.on_space = self._queue_has_space
        if self.finished:
            queue.close(self.final_error)
        self._filtered.append(queue)
        return queue

    def remove_queue(self, queue: MessageQueue) -> None:
        if queue in self._filtered:
            self._filtered.remove(queue)
            queue.close()
            self._queue_has_space()

    # -- internals -----------------------------------------------------------------

    def _start(self, op: _Operation) -> None:
        if self.finished:
            raise ConnectionLostError("the client is closed")
        if self.connected:
            self._issue(op)
        elif self.reconnecting or not self._has_connected:
            # Offline: held (bounded) until the connection is back.
            if len(self._offline) >= self.conn.config.max_queued_messages:
                raise ClientError("too many operations waiting for the connection")
            self._offline.append(op)
        else:
            raise ConnectionLostError("not connected")

    def _issue(self, op: _Operation) -> None:
        conn = self.conn
        try:
            if isinstance(op, _Publish):
                packet_id = conn.publish(
                    op.topic, op.payload, qos=op.qos, retain=op.retain, **op.properties
                )
                if packet_id is None:
                    op.completion.set_result(None)
                else:
                    self._publishes[packet_id] = op
            elif isinstance(op, _Subscribe):
                packet_id = conn.subscribe(op.subscriptions, **op.properties)
                self._subscribes[packet_id] = op
            else:
                packet_id = conn.unsubscribe(op.filters, **op.properties)
                self._unsubscribes[packet_id] = op
        except (LocalProtocolError, ValueError, TypeError) as exc:
            op.completion.set_error(exc)

    def _process(self) -> None:
        handlers = self._handlers
        for event in self.conn.events():
            handler = handlers.get(type(event))
            if handler is not None:
                handler(event)
        if self.connected and (self._replay or self._offline):
            ops = [*self._replay, *self._offline]
            self._replay.clear()
            self._offline.clear()
            for op in ops:
                self._issue(op)

    def _on_accepted(self, event: ConnectionAccepted) -> None:
        resumed_after_loss = self._has_connected and not event.session_present
        self._has_connected = True
        self.connected = True
        self._attempt = 0
        self.accepted = event
        if resumed_after_loss and self.subscriptions:
            # The server lost the session: subscribe again, before anything
            # held offline is sent.
            subs = tuple(self.subscriptions.values())
            self._replay.append(_Subscribe(Completion(), subs, {}))
        self.connect_completion.set_result(event)
        for callback in self.on_connect:
            callback(event)

    def _on_refused(self, event: ConnectionRefused) -> None:
        self.connected = False
        name = getattr(event.reason_code, "name", str(event.reason_code))
        text = f"connection refused: {name} (0x{int(event.reason_code):02X})"
        if event.reason_string:
            text += f": {event.reason_string}"
        self.connect_completion.set_error(ConnectError(text, event.reason_code))

    def _on_message(self, message: MessageReceived) -> None:
        correlation = message.correlation_data
        if correlation is not None and message.topic == self._response_topic:
            request = self._requests.pop(correlation, None)
            if request is not None:
                request.set_result(message)
                return
        claimed = False
        for queue in self._filtered:
            if queue.matches(message.topic):
                queue.put(message)
                claimed = True
        if claimed:
            return
        if self.on_message is not None:
            self.on_message(message)
        else:
            self.default_queue.put(message)

    def _on_puback(self, event: PublishAcknowledged) -> None:
        op = self._publishes.pop(event.packet_id, None)
        if op is None:
            return
        if event.reason_code >= 0x80:
            op.completion.set_error(
                PublishError(
                    f"publish to {op.topic!r} refused: {event.reason_code.name}"
                    + (f": {event.reason_string}" if event.reason_string else ""),
                    event.reason_code,
                )
            )
        else:
            op.completion.set_result(event)

    def _on_discarded(self, event: PublishDiscarded) -> None:
        op = self._publishes.pop(event.packet_id, None)
        if op is None:
            return
        if self.connected and self.reconnect_policy is not None and not self.finished:
            # The server lost the session (or the message no longer fits):
            # publish it again as a new message, so that it is not lost.
            self._replay.append(op)
            return
        op.completion.set_error(PublishError(f"publish discarded: {event.reason}"))

    def _on_suback(self, event: SubscribeAcknowledged) -> None:
        op = self._subscribes.pop(event.packet_id, None)
        if op is None:
            return
        codes = event.reason_codes
        for sub, code in zip(op.subscriptions, codes, strict=False):
            if code < 0x80:
                self.subscriptions[sub.topic_filter] = sub
        if codes and all(code >= 0x80 for code in codes):
            names = ", ".join(getattr(c, "name", str(c)) for c in codes)
            op.completion.set_error(SubscribeError(f"subscription refused: {names}", codes))
        else:
            op.completion.set_result(codes)

    def _on_unsuback(self, event: UnsubscribeAcknowledged) -> None:
        op = self._unsubscribes.pop(event.packet_id, None)
        if op is None:
            return
        for topic_filter in op.filters:
            self.subscriptions.pop(topic_filter, None)
        op.completion.set_result(event.reason_codes)

    def _on_disconnected(self, event: Disconnected) -> None:
        was_connected = self.connected
        self.connected = False
        for callback in self.on_disconnect:
            callback(event)
        if not was_connected:
            return
        # SUBSCRIBE/UNSUBSCRIBE are per connection: their packet ids are gone.
        lost: list[_Operation] = [*self._subscribes.values(), *self._unsubscribes.values()]
        self._subscribes.clear()
        self._unsubscribes.clear()
        if self.reconnect_policy is not None and not self.finished:
            # Sent again once the connection is back; QoS 1/2 publishes stay
            # in the session and are resent (or published again).
            self._offline.extendleft(reversed(lost))
            return
        name = getattr(event.reason_code, "name", str(event.reason_code))
        error = ConnectionLostError(f"connection lost: {name}", event.reason_code)
        for op in lost:
            op.completion.set_error(error)
        if not self.finished:
            self.fail(error)
